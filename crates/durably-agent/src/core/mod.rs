//! The agent core: every behaviour the rig and OpenAI agents share lives here once, and the
//! agents only translate between their client library's types and the core's.
//!
//! - [`ids`]: the step ids of an invocation, made by one function.
//! - [`completed`]: the check that a completed run is asked the question it answered.
//! - [`stream`]: a run as a stream: live chunks, or the recorded text of a completed run.
//! - [`redact`]: secrets blanked out of whatever is stored or returned.
// Without an agent (neither `rig` nor `openai`), the core is unused.
#![cfg_attr(not(any(feature = "rig", feature = "openai")), allow(dead_code, unused_imports))]

pub(crate) mod completed;
pub(crate) mod ids;
pub(crate) mod redact;
pub(crate) mod stream;
