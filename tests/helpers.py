"""Small helpers shared by the engine tests."""


def drain(gen):
    """Run an engine job (a generator) to the end: (its return value, the events it yielded)."""
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return stop.value, events
