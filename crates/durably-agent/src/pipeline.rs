//! Multi-agent pipelines: several agent runs, tools and tasks in **one** durable run.
//!
//! A pipeline is a workflow whose body runs agents. Write it with the workflow attribute, which
//! the facade also exports as `durably::durable_pipeline` (the python-durable name):
//!
//! ```ignore
//! #[durably::durable_pipeline(id = "research-{topic_id}")]
//! async fn research(topic_id: String, topic: String) -> anyhow::Result<String> {
//!     let plan = planner.run(format!("Plan searches about {topic}")).await?;
//!     let mut findings = Vec::new();
//!     for query in plan.output.lines() {
//!         findings.push(searcher.run(query).await?.output);
//!     }
//!     Ok(summarizer.run(findings.join("\n")).await?.output)
//! }
//! ```
//!
//! or with the closure form, `wf.run("research-42", |_ctx| async move { … })`.
//!
//! Inside the body, `agent.run(prompt)` is part of the enclosing run (it finds it with
//! `RunContext::current()`): each agent's model calls and tool calls are steps of the pipeline
//! run, prefixed by the agent's name (`planner.model#1`, `searcher.tool.search#1.call_7`), and
//! the second and later invocations of one agent get `<agent>#1`, `<agent>#2`… in call order.
//! Executing the pipeline's run id again after a crash replays every recorded model and tool
//! call without a request and continues live from the first one that was not recorded;
//! executing a completed pipeline returns its stored output.
//!
//! [`durable_tool`](crate::durable_tool) and `#[durably::task]` functions called in the body are
//! steps of the same run.
