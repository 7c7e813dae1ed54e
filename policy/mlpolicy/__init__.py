"""Rules of the ml-platform policy pack (pure functions over plain dicts) and the SDK glue (``pack``)."""
