"""Time, symbols, column schemas, seeding, errors: what every other package shares."""
