//! brainmesh models: loading and running LLMs with tch (LibTorch).
