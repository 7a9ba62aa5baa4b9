//! No credential reaches the store, whatever its format: a provider that echoes the agent's key
//! in a 401 or 429 body gets it blanked out of the step error, the run error and the returned
//! error, with either agent.
#![cfg(all(feature = "openai", feature = "rig"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use durably_agent::TaskConfig;
use durably_agent::openai::async_openai::config::OpenAIConfig as AsyncOpenAiConfig;
use durably_agent::openai::{OpenAiAgent, client};
use durably_agent::rig::DurableAgent;
use durably_agent::rig::rig_agent::AgentBuilder;
use durably_agent::rig::rig_core::providers::openai::OpenAIConfig as RigOpenAiConfig;
use durably_core::backoff::constant;
use durably_core::{MemoryStore, StepStatus, Workflow};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};

/// Keys of several providers, none of them `sk-…` alone.
const KEYS: [&str; 4] = [
    "gsk_8fJ2kQ9zLmN4pR7sT1vW3xY5aB6cD0eFgHiJkLmN",
    "sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe-AbCdEf",
    "3f9a1c7e5b2d8f4a6c0e9b1d7f3a5c8e2b4d6f0a",
    "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
];

fn engine() -> Workflow {
    Workflow::builder("redaction").store(MemoryStore::new()).build()
}

fn no_retries() -> TaskConfig {
    TaskConfig::new(0, constant(0.0))
}

/// The provider's error bodies: each echoes the key.
fn echo_key(mock: &MockOpenAi, key: &str) {
    mock.push(MockReply::status(401, format!("Invalid API Key: {key}. Check it.")));
    mock.push(MockReply::status(429, format!("Rate limit reached for key {key} (org-1)")));
}

/// Checks what was stored and returned for `run_id`, which failed with the provider's echo.
async fn assert_blanked(wf: &Workflow, run_id: &str, returned: &durably_core::Error, key: &str) {
    let steps = wf.list_steps(run_id).await.unwrap();
    let failed = steps.iter().find(|s| s.status == StepStatus::Failed).expect("a failed model step");
    let error = failed.error.as_deref().unwrap();
    assert!(error.contains("[redacted]"), "{run_id}: {error}");
    assert!(!error.contains(key), "{run_id}: the key {key} is in the step error: {error}");
    let run = wf.get_run(run_id).await.unwrap().unwrap();
    let run_error = run.error.unwrap_or_default();
    assert!(!run_error.is_empty(), "{run_id}: the run recorded no error");
    assert!(!run_error.contains(key), "{run_id}: the key is in the run error: {run_error}");
    assert!(!format!("{steps:?}").contains(key), "{run_id}: the key is in a step record");
    assert!(!returned.to_string().contains(key), "{run_id}: the key is in the error: {returned}");
    assert!(!format!("{returned:?}").contains(key), "{run_id}: the key is in the error: {returned:?}");
}

/// The two ways an OpenAI agent gets its key: from its builder, or inside a client it is given.
fn openai_agent(wf: &Workflow, mock: &MockOpenAi, key: &str, with_client: bool) -> OpenAiAgent {
    let builder = OpenAiAgent::builder(wf).name("oa").model_config(no_retries());
    let builder = if with_client {
        let config = AsyncOpenAiConfig::new().with_api_base(mock.base_url()).with_api_key(key);
        builder.client(client(config))
    } else {
        builder.api_base(mock.base_url()).api_key(key)
    };
    builder.build()
}

#[tokio::test]
async fn the_openai_agent_blanks_the_key_of_its_builder_or_of_its_client() {
    for with_client in [false, true] {
        for (i, key) in KEYS.iter().enumerate() {
            let mock = MockOpenAi::start().await;
            echo_key(&mock, key);
            let wf = engine();
            let agent = openai_agent(&wf, &mock, key, with_client);
            for status in ["401", "429"] {
                let run_id = format!("oa-{with_client}-{i}-{status}");
                let err = agent.run_with_id("hi", run_id.clone()).await.unwrap_err();
                assert_blanked(&wf, &run_id, &err, key).await;
            }
            assert_eq!(mock.requests(), 2);
        }
    }
}

fn rig_agent(wf: &Workflow, mock: &MockOpenAi, key: &str) -> DurableAgent {
    let model = RigOpenAiConfig::new(key).with_base_url(mock.base_url()).client().chat("gpt-4o-mini");
    DurableAgent::new(model, wf, |b: AgentBuilder| b.preamble("terse")).name("rg").model_config(no_retries())
}

#[tokio::test]
async fn the_rig_agent_blanks_the_secrets_it_is_told() {
    for (i, key) in KEYS.iter().enumerate() {
        let mock = MockOpenAi::start().await;
        echo_key(&mock, key);
        let wf = engine();
        // One secret, or several: the client's key among them.
        let agent = if i % 2 == 0 {
            rig_agent(&wf, &mock, key).redact_secret(*key)
        } else {
            rig_agent(&wf, &mock, key).secrets(["another-secret-value", key])
        };
        for status in ["401", "429"] {
            let run_id = format!("rg-{i}-{status}");
            let err = agent.run_with_id("hi", run_id.clone()).await.unwrap_err();
            assert_blanked(&wf, &run_id, &err, key).await;
        }
        assert_eq!(mock.requests(), 2);
    }
}
