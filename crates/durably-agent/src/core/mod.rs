//! The agent core: every behaviour the rig and OpenAI agents share lives here once, and the
//! agents only translate between their client library's types and the core's.
//!
//! - [`settings`]: what both agents are configured with (name, retries, turns, secrets).
//! - [`plan`]: the invocation plan: the enclosing run, or a run of the agent's own.
//! - [`ids`]: the step ids of an invocation, made by one function.
//! - `extract`: structured output: the schema sent, the check of an answer, the feedback.
//! - [`completed`]: the check that a completed run is asked the question it answered.
//! - [`invocation`]: the state one invocation's steps share.
//! - [`input`]: the rig agent's input step and its hash.
//! - [`listing`]: tool lists served from outside (MCP), recorded when a run starts.
//! - [`limits`]: per-attempt timeouts, the run's recorded deadline, the budget.
//! - [`model`]: the model-call step.
//! - [`genai`]: a model request's span, with the GenAI semantic-convention fields.
//! - [`tool`]: the approval-gated tool-call step.
//! - [`stream`]: a run as a stream: live chunks, or the recorded text of a completed run.
//! - [`provider`]: a provider's HTTP error read from its status, body and `retry-after`.
//! - [`redact`]: secrets blanked out of whatever is stored or returned.
//! - [`response`]: the one response type of a run.
//! - [`session`]: durable conversations: turns as runs, history rebuilt from them.
// Each agent uses part of the core (only the rig agent records an input step, for one): built
// with one agent, or none, the rest is unused.
#![cfg_attr(not(all(feature = "rig", feature = "openai")), allow(dead_code, unused_imports))]

pub(crate) mod completed;
#[cfg(any(feature = "rig", feature = "openai"))]
pub(crate) mod extract;
pub(crate) mod genai;
pub(crate) mod ids;
pub(crate) mod input;
pub(crate) mod invocation;
pub(crate) mod limits;
pub(crate) mod listing;
pub(crate) mod model;
pub(crate) mod plan;
pub(crate) mod provider;
pub(crate) mod redact;
pub(crate) mod response;
pub(crate) mod session;
pub(crate) mod settings;
pub(crate) mod stream;
pub(crate) mod tool;
