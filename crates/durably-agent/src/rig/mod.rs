//! rig 0.44 agents made durable (being built).
