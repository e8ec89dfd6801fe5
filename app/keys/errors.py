"""The one exception of key requests, shared by the store and the rules for a key's limits."""


class KeyRequestError(ValueError):
    """A request to the store that cannot be honoured; the message is fit to show the user and names the field."""
