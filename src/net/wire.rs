//! Gemini REST v1beta wire formats (pure), one module per job: `request` (parsing what clients
//! send, the token-counting rule), `response` (success bodies), `error` (Google's error envelope
//! and wording), `client` (what `drive` sends and learns from an answer); and the formats of the
//! other surfaces: `openai` (the OpenAI-compatible endpoint), `live` (Live API frames),
//! `structured` (response schemas) and `media` (inline and file data).

pub mod client;
pub mod error;
pub mod live;
pub mod media;
pub mod openai;
pub mod request;
pub mod response;
pub mod structured;
