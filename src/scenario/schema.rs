//! The scenario file's TOML schema, as serde reads it: every table denies unknown fields, and
//! defaults are filled in here. `validate` turns it into a [`Scenario`](super::Scenario).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use crate::core::ledger::WindowKind;
use crate::core::server::{ConcurrencyScope, TpmCounts};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    pub(super) name: String,
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) description: Option<String>,
    #[serde(default = "default_seed")]
    pub(super) seed: u64,
    #[serde(default = "default_start")]
    pub(super) start: String,
    pub(super) horizon: Option<String>,
    #[serde(default)]
    pub(super) server: RawServer,
    pub(super) models: BTreeMap<String, RawModel>,
    pub(super) topology: RawTopology,
    pub(super) workload: RawWorkload,
    #[serde(default)]
    pub(super) strategies: Vec<RawStrategy>,
    #[serde(default)]
    pub(super) fleet: RawFleet,
}

/// `[fleet]`: copies of each strategy on the same keys.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFleet {
    pub(super) instances: Option<u64>,
    pub(super) ledger: Option<String>,
    pub(super) sync_delay: Option<String>,
}

fn default_seed() -> u64 {
    1
}

fn default_start() -> String {
    "2025-10-15T09:00:00-07:00".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    #[serde(default)]
    pub(super) window: WindowKind,
    #[serde(default)]
    pub(super) tpm_counts: TpmCounts,
    #[serde(default)]
    pub(super) count_rejected: bool,
    #[serde(default)]
    pub(super) fault_rate: f64,
    #[serde(default = "default_tz")]
    pub(super) daily_reset_tz: String,
    #[serde(default)]
    pub(super) latency: RawLatency,
    #[serde(default)]
    pub(super) quirks: RawQuirks,
    #[serde(default = "default_spend_window")]
    pub(super) spend_window: String,
    #[serde(default = "default_spend_delay")]
    pub(super) spend_delay: String,
    #[serde(default = "default_error_latency")]
    pub(super) error_latency: String,
    #[serde(default)]
    pub(super) openai_errors: super::OpenAiErrors,
    #[serde(default)]
    pub(super) embed_batch: super::EmbedBatch,
    #[serde(default)]
    pub(super) standard_keys: super::StandardKeys,
    #[serde(default)]
    pub(super) live: RawLive,
    pub(super) paygo: Option<RawPaygo>,
}

/// `[server.paygo]`: the organisation's Vertex AI PayGo tier and the rules Google leaves open.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPaygo {
    pub(super) tier: Option<u64>,
    pub(super) spend_30d: Option<f64>,
    #[serde(default = "paygo_system_rpm")]
    pub(super) system_rpm: u64,
    #[serde(default = "paygo_spike")]
    pub(super) spike: f64,
    #[serde(default = "paygo_priority_price")]
    pub(super) priority_price: f64,
}

fn paygo_system_rpm() -> u64 {
    30_000
}
fn paygo_spike() -> f64 {
    2.0
}
fn paygo_priority_price() -> f64 {
    1.8
}

/// `[models.<name>.paygo]`: a model on Vertex AI Standard PayGo.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModelPaygo {
    pub(super) family: String,
    pub(super) tpm: Option<u64>,
    pub(super) priority_tpm: Option<u64>,
}

/// `[server.live]`: how Live sessions are run, where Google does not document it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLive {
    #[serde(default = "live_setup")]
    pub(super) setup: String,
    #[serde(default = "live_reject_delay")]
    pub(super) reject_delay: String,
    #[serde(default = "live_quota_check")]
    pub(super) quota_check: String,
    #[serde(default = "zero_s")]
    pub(super) release: String,
    #[serde(default = "live_early_close")]
    pub(super) early_close: String,
    #[serde(default = "live_lifetime")]
    pub(super) lifetime: String,
    #[serde(default = "live_go_away")]
    pub(super) go_away: String,
    #[serde(default = "live_audio_cap")]
    pub(super) audio_cap: String,
    #[serde(default = "live_video_cap")]
    pub(super) video_cap: String,
    #[serde(default = "live_audio_tps")]
    pub(super) audio_tokens_per_second: u64,
}

impl Default for RawLive {
    fn default() -> Self {
        RawLive {
            setup: live_setup(),
            reject_delay: live_reject_delay(),
            quota_check: live_quota_check(),
            release: zero_s(),
            early_close: live_early_close(),
            lifetime: live_lifetime(),
            go_away: live_go_away(),
            audio_cap: live_audio_cap(),
            video_cap: live_video_cap(),
            audio_tokens_per_second: live_audio_tps(),
        }
    }
}

fn live_setup() -> String {
    "300ms".into()
}
fn live_reject_delay() -> String {
    "800ms".into()
}
fn live_quota_check() -> String {
    "setup".into()
}
fn zero_s() -> String {
    "0s".into()
}
fn live_early_close() -> String {
    "holds_turn".into()
}
fn live_lifetime() -> String {
    "10m".into()
}
fn live_go_away() -> String {
    "50s".into()
}
fn live_audio_cap() -> String {
    "15m".into()
}
fn live_video_cap() -> String {
    "2m".into()
}
fn live_audio_tps() -> u64 {
    32
}

fn default_spend_window() -> String {
    "10m".into()
}

fn default_spend_delay() -> String {
    "0s".into()
}

fn default_error_latency() -> String {
    "0s".into()
}

/// `[server.quirks]`: behaviours seen in the wild, all off unless set.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQuirks {
    pub(super) per_day_retry: Option<String>,
    pub(super) per_minute_retry: Option<String>,
    pub(super) zero_quota_retry: Option<String>,
    #[serde(default)]
    pub(super) capacity_rate: f64,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            window: WindowKind::default(),
            tpm_counts: TpmCounts::default(),
            count_rejected: false,
            fault_rate: 0.0,
            daily_reset_tz: default_tz(),
            latency: RawLatency::default(),
            quirks: RawQuirks::default(),
            spend_window: default_spend_window(),
            spend_delay: default_spend_delay(),
            error_latency: default_error_latency(),
            openai_errors: Default::default(),
            embed_batch: Default::default(),
            standard_keys: Default::default(),
            live: RawLive::default(),
            paygo: None,
        }
    }
}

fn default_tz() -> String {
    "America/Los_Angeles".into()
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLatency {
    #[serde(default = "default_ttft")]
    pub(super) ttft: String,
    #[serde(default = "default_tps")]
    pub(super) tokens_per_second: f64,
    #[serde(default = "default_jitter")]
    pub(super) jitter: f64,
}

impl Default for RawLatency {
    fn default() -> Self {
        RawLatency {
            ttft: default_ttft(),
            tokens_per_second: default_tps(),
            jitter: default_jitter(),
        }
    }
}

fn default_ttft() -> String {
    "800ms".into()
}
fn default_tps() -> f64 {
    150.0
}
fn default_jitter() -> f64 {
    0.2
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModel {
    pub(super) rpm: Option<u64>,
    pub(super) tpm: Option<u64>,
    pub(super) rpd: Option<u64>,
    pub(super) tpd: Option<u64>,
    pub(super) concurrent: Option<u64>,
    #[serde(default)]
    pub(super) concurrent_scope: ConcurrencyScope,
    pub(super) latency: Option<RawLatency>,
    pub(super) shared_pool: Option<RawSharedPool>,
    pub(super) provisioned: Option<RawProvisioned>,
    #[serde(default)]
    pub(super) price_input: f64,
    #[serde(default)]
    pub(super) price_output: f64,
    #[serde(default)]
    pub(super) live: bool,
    pub(super) routed_to: Option<String>,
    #[serde(default)]
    pub(super) price_changes: Vec<RawPriceChange>,
    #[serde(default)]
    pub(super) routed_quota: crate::core::server::RouteQuota,
    pub(super) paygo: Option<RawModelPaygo>,
}

/// `[models.<name>.provisioned]`: reserved throughput per project (Vertex AI's provisioned
/// throughput).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPriceChange {
    pub(super) from: String,
    #[serde(default)]
    pub(super) price_input: f64,
    #[serde(default)]
    pub(super) price_output: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvisioned {
    pub(super) rpm: Option<u64>,
    pub(super) tpm: Option<u64>,
    #[serde(default = "default_overflow")]
    pub(super) overflow: String,
}

fn default_overflow() -> String {
    "spill".into()
}

/// `[models.<name>.shared_pool]`: a capacity shared with other tenants, no per-project limits.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSharedPool {
    pub(super) capacity: u64,
    #[serde(default = "default_others")]
    pub(super) others: f64,
    #[serde(default)]
    pub(super) swing: f64,
    #[serde(default)]
    pub(super) bursts_per_hour: f64,
    #[serde(default = "default_burst")]
    pub(super) burst: String,
    #[serde(default)]
    pub(super) burst_load: f64,
}

fn default_others() -> f64 {
    0.5
}

fn default_burst() -> String {
    "2m".into()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) rpm: Option<u64>,
    pub(super) tpm: Option<u64>,
    pub(super) rpd: Option<u64>,
    pub(super) tpd: Option<u64>,
    pub(super) concurrent: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTopology {
    #[serde(default = "one")]
    pub(super) keys_per_project: u64,
    pub(super) projects: Option<CountOrNames>,
    #[serde(default)]
    pub(super) accounts: Vec<RawAccount>,
    #[serde(default)]
    pub(super) keys: Vec<RawKey>,
    #[serde(default)]
    pub(super) project: BTreeMap<String, RawProjectSettings>,
    pub(super) spend_cap: Option<f64>,
}

fn one() -> u64 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccount {
    pub(super) name: String,
    pub(super) projects: CountOrNames,
    pub(super) spend_cap: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKey {
    pub(super) project: String,
    pub(super) key: Option<String>,
    #[serde(default)]
    pub(super) invalid: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProjectSettings {
    pub(super) keys: Option<u64>,
    #[serde(default)]
    pub(super) invalid_keys: u64,
    #[serde(default)]
    pub(super) rpd_used: u64,
    pub(super) tier: Option<String>,
    #[serde(default)]
    pub(super) limits: BTreeMap<String, RawLimits>,
}

/// `projects = 6` or `projects = ["a", "b"]`.
pub(super) enum CountOrNames {
    Count(u64),
    Names(Vec<String>),
}

impl<'de> Deserialize<'de> for CountOrNames {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CountOrNames;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of projects or a list of project names")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(CountOrNames::Count)
                    .map_err(|_| E::custom(format!("expected a positive number of projects, got {v}")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(CountOrNames::Count(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut names = Vec::new();
                while let Some(n) = seq.next_element::<String>()? {
                    names.push(n);
                }
                Ok(CountOrNames::Names(names))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkload {
    pub(super) kind: String,
    pub(super) rate: Option<f64>,
    pub(super) duration: Option<String>,
    pub(super) burst_on: Option<String>,
    pub(super) burst_off: Option<String>,
    pub(super) requests: Option<u64>,
    pub(super) workers: Option<u64>,
    pub(super) path: Option<String>,
    pub(super) tail: Option<String>,
    pub(super) input_tokens: Option<RawTokens>,
    pub(super) output_tokens: Option<RawTokens>,
    pub(super) model: Option<String>,
    #[serde(default)]
    pub(super) models: Vec<RawWeightedModel>,
    pub(super) sessions: Option<u64>,
    pub(super) clients: Option<u64>,
    pub(super) turns: Option<u64>,
    pub(super) pause: Option<String>,
    pub(super) hold: Option<String>,
    pub(super) modality: Option<String>,
    pub(super) close_after: Option<String>,
    pub(super) priority: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeightedModel {
    pub(super) name: String,
    pub(super) weight: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTokens {
    pub(super) dist: String,
    pub(super) value: Option<u64>,
    pub(super) min: Option<u64>,
    pub(super) max: Option<u64>,
    pub(super) median: Option<f64>,
    pub(super) p99: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStrategy {
    pub(super) name: Option<String>,
    pub(super) kind: String,
    pub(super) interval: Option<String>,
    pub(super) compat: Option<String>,
    pub(super) margin: Option<String>,
    pub(super) preset: Option<String>,
    pub(super) cooldown_time: Option<String>,
    pub(super) allowed_fails: Option<u32>,
    pub(super) num_retries: Option<u32>,
    pub(super) retry_after: Option<String>,
    pub(super) max_failures: Option<u32>,
    #[serde(default)]
    pub(super) fallback: Vec<String>,
    #[serde(default)]
    pub(super) known_limits: BTreeMap<String, RawLimits>,
    pub(super) retry: Option<RawRetry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetry {
    pub(super) policy: String,
    pub(super) base: Option<String>,
    pub(super) cap: Option<String>,
    pub(super) jitter: Option<String>,
    pub(super) max_attempts: Option<u32>,
}
