"""Local emulators of external APIs, for tests."""
