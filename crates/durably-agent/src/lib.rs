//! Durable LLM agents: every model request and every tool call is a checkpointed step.
//!
//! Being built (issue 3): `DurableAgent` for rig (feature `rig`) and a durable OpenAI
//! chat-completions agent (feature `openai`).
