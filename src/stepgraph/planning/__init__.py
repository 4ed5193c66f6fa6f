"""Planning a batch before it runs: the forecast (`forecast`) and the AWS estimate (`aws_cost`)."""
