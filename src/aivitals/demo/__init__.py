"""`aivitals demo`: a tour of aivitals on a fake upstream."""
