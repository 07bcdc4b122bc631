"""What a call said and answered, read from the provider's own shapes into a `CallContent`.

The SDK's wrappers hand these the client's objects, the gateway its decoded JSON bodies: each
reader takes either (a field is read from a dict or an attribute alike), so the SDK and the
gateway fill the same content the same way. Readers run inside the recorder's content thunk, on
the quality worker, never on the caller's thread.
"""
