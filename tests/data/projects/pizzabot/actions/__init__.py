"""Custom actions of the pizzabot test project (imported as `actions`)."""
