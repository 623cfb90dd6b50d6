"""HTTP server: Rasa's API and the channel webhooks (see ``app.create_app``)."""
