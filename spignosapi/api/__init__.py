"""The shared API plumbing: error envelope, request ids, authentication helpers, pagination."""
