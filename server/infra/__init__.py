"""Infrastructure: the database and migrations, the file store, the persistent outbox, PDFs and
the signing identity. Knows the core's models; knows nothing of services or HTTP."""
