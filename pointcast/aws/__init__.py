"""AWS wire details shared by every API pointcast speaks: errors, SigV4, ARNs, shapes, rest-json routing."""
