"""PutEvents: endpoint updates plus the app events that segments and journeys look at."""
