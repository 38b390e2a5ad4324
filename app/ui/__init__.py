"""The tray app (Qt only).  It talks to :class:`app.services.Services` directly, never over HTTP."""
