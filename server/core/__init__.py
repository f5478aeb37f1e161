"""The domain's core: models, the case workflow, policy (who may do what), the audit chain,
input schemas, errors, tokens, translations and the event bus. Imports nothing of ours above it.
See docs/architecture.md."""
