"""The REST side of a Plivo call (hang-up, transfer): I/O that the sans-I/O ``plivo`` package
leaves out."""
