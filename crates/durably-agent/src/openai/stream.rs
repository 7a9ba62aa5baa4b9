//! Streaming runs of the OpenAI agent: its events, and a whole completion built from chunks.

use super::AgentRun;
use crate::core::stream::RunEvent;
use async_openai::types::chat::{
    ChatChoice, ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls, ChatCompletionResponseMessage,
    CompletionUsage, CreateChatCompletionResponse, CreateChatCompletionStreamResponse, FinishReason,
    FunctionCall, Role,
};

/// What a streaming agent run yields.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum StreamEvent {
    /// Text of the model's answer in one model call. Live calls yield it in pieces as the
    /// provider sends them (`replayed: false`); a recorded call yields its whole text at once
    /// (`replayed: true`).
    Text {
        /// The text.
        text: String,
        /// Whether it comes from the store rather than from the model.
        replayed: bool,
    },
    /// The run finished; the last event.
    Done(Box<AgentRun>),
}

pub(crate) type Sink = crate::core::stream::Sink<StreamEvent>;

impl RunEvent for StreamEvent {
    type Response = AgentRun;

    fn replayed_text(text: String) -> Self {
        StreamEvent::Text { text, replayed: true }
    }

    fn is_text(&self) -> bool {
        matches!(self, StreamEvent::Text { .. })
    }

    fn live_text(&self) -> Option<&str> {
        match self {
            StreamEvent::Text { text, replayed: false } => Some(text),
            _ => None,
        }
    }

    fn done(response: AgentRun) -> Self {
        StreamEvent::Done(Box::new(response))
    }
}

/// Builds a whole chat completion from its stream chunks.
#[derive(Default)]
pub(crate) struct Accumulator {
    id: String,
    created: u32,
    model: String,
    content: Option<String>,
    refusal: Option<String>,
    // By index: (id, name, arguments).
    calls: Vec<(String, String, String)>,
    finish_reason: Option<FinishReason>,
    usage: Option<CompletionUsage>,
}

impl Accumulator {
    /// Adds a chunk; returns its text delta, if any.
    pub(crate) fn add(&mut self, chunk: CreateChatCompletionStreamResponse) -> Option<String> {
        if self.id.is_empty() {
            self.id = chunk.id;
            self.created = chunk.created;
            self.model = chunk.model;
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        let mut text = None;
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(delta) = choice.delta.content.filter(|t| !t.is_empty()) {
                self.content.get_or_insert_with(String::new).push_str(&delta);
                text = Some(delta);
            }
            if let Some(r) = choice.delta.refusal {
                self.refusal.get_or_insert_with(String::new).push_str(&r);
            }
            for call in choice.delta.tool_calls.unwrap_or_default() {
                let i = call.index as usize;
                if self.calls.len() <= i {
                    self.calls.resize(i + 1, Default::default());
                }
                let slot = &mut self.calls[i];
                if let Some(id) = call.id {
                    slot.0 = id;
                }
                if let Some(f) = call.function {
                    if let Some(name) = f.name {
                        slot.1.push_str(&name);
                    }
                    if let Some(args) = f.arguments {
                        slot.2.push_str(&args);
                    }
                }
            }
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
        }
        text
    }

    /// The completion the chunks make up, as a non-streaming call would have returned it.
    pub(crate) fn finish(self) -> CreateChatCompletionResponse {
        let tool_calls: Vec<ChatCompletionMessageToolCalls> = self
            .calls
            .into_iter()
            .map(|(id, name, arguments)| {
                ChatCompletionMessageToolCalls::Function(ChatCompletionMessageToolCall {
                    id,
                    function: FunctionCall { name, arguments },
                })
            })
            .collect();
        CreateChatCompletionResponse {
            id: self.id,
            choices: vec![ChatChoice {
                index: 0,
                message: ChatCompletionResponseMessage {
                    content: self.content,
                    refusal: self.refusal,
                    tool_calls: if tool_calls.is_empty() { None } else { Some(tool_calls) },
                    role: Role::Assistant,
                    ..Default::default()
                },
                finish_reason: self.finish_reason,
                logprobs: None,
            }],
            created: self.created,
            model: self.model,
            object: "chat.completion".into(),
            usage: self.usage,
            ..Default::default()
        }
    }
}
