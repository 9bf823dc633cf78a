"""Tags on applications, segments and campaigns, addressed by ARN."""
