"""Human review of interrupted items: the S3 record of what an item waits for, and how to answer it."""
