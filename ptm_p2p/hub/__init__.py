"""The hub daemon (`ptm hub`): sequencer, checkpoint signer and bootstrap peer."""
