//! A durable OpenAI chat-completions agent on async-openai (being built).
