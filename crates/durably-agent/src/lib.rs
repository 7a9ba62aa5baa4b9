//! Durable LLM agents: every model request and every tool call is a checkpointed step.
//!
//! - [`rig`] (feature `rig`): `DurableAgent` wraps a rig 0.44 agent.
//! - [`openai`] (feature `openai`): a durable chat-completions agent on async-openai, with typed
//!   tools, streaming, approvals, and durable single calls (`durable_chat`).
//! - [`durable_tool`]: one tool function made a checkpointed task, for any workflow.
//! - [`pipeline`]: several agents in one run (`#[durably::durable_pipeline]`).
//!
//! Both agents are thin adapters over one agent core (the crate's `core` module: step ids,
//! the invocation plan, model and tool steps, approvals, streaming, redaction), and return one
//! [`AgentResponse`] type.
//!
//! Shared by both: [`TaskConfig`] (retries and backoff for model calls and tool calls),
//! [`ModelError`] (how a failed model call is recorded) and [`request_hash`] (the canonical hash
//! stored with each model step so that a replay with a different request fails loudly).

mod approval;
mod config;
mod core;
mod error;
mod failure;
mod hash;
mod limits;
#[cfg(feature = "mcp")]
pub mod mcp;
mod model_limit;
pub mod pipeline;
pub mod sessions;
mod tool;

pub use crate::core::response::AgentResponse;
pub use approval::Approval;
pub use config::TaskConfig;
pub use error::ModelError;
pub use failure::model_error_of;
pub use hash::{canonical_json, request_hash};
pub use limits::{AgentError, Budget, BudgetKind, agent_error_of};
pub use model_limit::{ModelLimit, ModelLimits};
pub use tool::{DurableTool, durable_tool};

#[cfg(feature = "openai")]
pub mod openai;
#[cfg(feature = "rig")]
pub mod rig;
