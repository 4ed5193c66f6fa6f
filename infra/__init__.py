"""The CDK app's stack and one construct per concern."""
