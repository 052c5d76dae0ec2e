//! The reference of every scenario field: type, default, meaning, example. `flux-sim reference`
//! prints it as Markdown (`scenarios/REFERENCE.md`); a test checks that it lists exactly the
//! fields the schema reads, so it cannot drift from the code.

/// One field of a scenario file.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Where it sits: the table (`server.latency`, `strategies[]`, …) and the field name.
    pub table: &'static str,
    /// The field's name.
    pub name: &'static str,
    /// Its type as written in TOML.
    pub ty: &'static str,
    /// What it is when absent.
    pub default: &'static str,
    /// What it means.
    pub meaning: &'static str,
    /// A value as one would write it.
    pub example: &'static str,
}

const fn f(
    table: &'static str,
    name: &'static str,
    ty: &'static str,
    default: &'static str,
    meaning: &'static str,
    example: &'static str,
) -> Field {
    Field {
        table,
        name,
        ty,
        default,
        meaning,
        example,
    }
}

/// The tables of a scenario file, in the order the reference shows them, with a sentence each.
pub const TABLES: [(&str, &str); 21] = [
    ("", "The top level: what the scenario is and when it starts."),
    ("server", "How the mock server enforces quotas where Google does not document it."),
    ("server.latency", "Response time: ttft + output_tokens / tokens_per_second, times a lognormal factor of median 1 drawn per request. Also `models.<name>.latency`."),
    ("server.live", "How Live API sessions are run (models with `live = true`, a `sessions` workload): what Google documents as defaults, and a setting for each thing it does not. Also how `serve` runs real Live sessions."),
    ("server.paygo", "The organisation's Vertex AI Standard PayGo tier and the rules Google leaves open; it applies to the models with a `models.<name>.paygo` table. The tier follows the organisation's spend over the last 30 days (Tier 1 $10–250, Tier 2 $250–2,000, Tier 3 above $2,000; the standard-paygo page) and gives each model a prioritized throughput; the whole scenario is one organisation in one region."),
    ("server.quirks", "Behaviours users have met that contradict Google's documentation; all off unless set, except `per_day_retry`, which follows what Google was last seen to send. A strategy that trusts RetryInfo blindly suffers under the first three."),
    ("models.<name>", "One table per model the server knows, with the default limits of every project. Absent = unlimited; 0 = not available."),
    ("models.<name>.shared_pool", "A capacity shared with other tenants instead of per-project quotas (Vertex AI's dynamic shared quota): a request that finds the pool full gets a 429 without details, whichever project or key sends it. Only a request served takes room (for 60 s): one refused by the spend cap or the capacity quirk, or answered 503, takes none, as with a reservation or the quotas. The model may then set no rpm, tpm, rpd, tpd or concurrent, nor may `topology.project.<name>.limits` for it."),
    ("models.<name>.provisioned", "Throughput each project has reserved on the model (Vertex AI's provisioned throughput), sliding per-minute windows of its own: what fits is served first and spends neither the shared pool nor the quotas. A 429 for the overflow (spilled to the quotas) names the quotas' violated dimensions and the earliest instant at which the reservation or the quotas admit the request; it is unservable only when neither ever can. The trace's `admitted_by` says which path served each request (`reserved`, `pool` or `quota`)."),
    ("models.<name>.paygo", "A model on Vertex AI Standard PayGo (no per-project quotas: the model may set no rpm, tpm, rpd, tpd or concurrent). A request is checked in this order: the project's reservation (`provisioned`) first; then the system limit (`server.paygo.system_rpm`, and the spike rule on it), beyond which it gets a 429 without details whatever its header; then, sent with `X-Vertex-AI-LLM-Shared-Request-Type: priority` (`workload.priority`, or the header on serve), Priority PayGo, at `priority_price` times the price; then the organisation's tier: its tokens per minute over any 60 s and, per the spike rule, over any 1 s at most `spike` × the minute's limit / 60 (a request alone in its second is never a spike); beyond the tier, best-effort: room in the model's `shared_pool` if it has one, else a 429 without details. The trace's `admitted_by` says `priority`, `paygo` or `pool`."),
    ("topology", "Accounts → projects → keys. Quota belongs to a (project, model) pair: every key of a project spends the same budget."),
    ("topology.accounts[]", "An account and its projects (Google allows about 10 per account)."),
    ("topology.project.<name>", "Settings of one project, by name."),
    ("limits", "Limits of one model: under `topology.project.<name>.limits.<model>` (overrides the model's defaults for that project, dimension by dimension; refused for a shared-pool model) and `strategies[].known_limits.<model>` (what the strategy believes)."),
    ("topology.keys[]", "Extra keys, e.g. your real ones for `drive` against Gemini."),
    ("workload", "The requests. `kind` decides which other fields apply."),
    ("workload.models[]", "A weighted choice of model per request."),
    ("tokens", "A token-size distribution: `workload.input_tokens` and `workload.output_tokens`."),
    ("strategies[]", "The strategies to compare; none listed = round_robin, fixed_interval and exact_cooldown with their defaults (`flux-sim strategies`)."),
    ("strategies[].retry", "What to do after a 429, a 503 or an invalid key."),
    ("fleet", "Several copies (containers, replicas) of each strategy on the same keys, request r going to copy r mod instances: each with its own counts, or sharing one ledger that each sees late. Counts are shared by the strategies that keep them (exact_cooldown and flux: their ledger replica; litellm_usage: its minute counters); the others share nothing."),
];

/// Every field, table by table.
pub const FIELDS: &[Field] = &[
    f("", "name", "string", "(required)", "The scenario's name, shown in every table and chart.", "\"dubbing\""),
    f("", "description", "string", "none", "Free text about the situation modelled (comments serve as well).", "\"Nightly dubbing batch\""),
    f("", "seed", "integer 0 to 2⁶³−1", "1", "Seed of the workload, latencies, faults and retry jitter; `--seed` overrides it. Same seed ⇒ same bytes.", "42"),
    f("", "start", "RFC 3339 time with offset", "\"2025-10-15T09:00:00-07:00\"", "Wall clock at t = 0: calendar minutes and the daily reset are computed from it.", "\"2025-10-15T21:00:00-07:00\""),
    f("", "horizon", "duration", "\"7d\" (closed workloads)", "Closed workloads only: stop here even if the batch is unfinished (what is left is `pending`). Open and trace workloads run for `workload.duration`.", "\"10h\""),
    f("", "server", "table", "all defaults", "See `server`.", ""),
    f("", "models", "table of tables", "(required)", "See `models.<name>`.", ""),
    f("", "topology", "table", "(required)", "See `topology`.", ""),
    f("", "workload", "table", "(required)", "See `workload`.", ""),
    f("", "strategies", "array of tables", "the three built-ins", "See `strategies[]`.", ""),
    f("server", "window", "\"sliding\" | \"fixed\" | \"bucket\"", "\"sliding\"", "The per-minute window (Google does not document it): any 60 s, the calendar minute, or a bucket refilled continuously. A schedule safe under sliding windows is safe under the others.", "\"fixed\""),
    f("server", "tpm_counts", "\"input\" | \"total\"", "\"input\"", "What the quotas' TPM and TPD count: input tokens (Gemini), or input + output charged at admission. A reservation (`models.<name>.provisioned.tpm`) counts input tokens either way.", "\"total\""),
    f("server", "count_rejected", "boolean", "false", "Whether a rejected request still spends RPM.", "true"),
    f("server", "fault_rate", "number 0 to 1", "0", "Probability that an admitted request gets 503 UNAVAILABLE instead (drawn after the spend cap's check). A 503 costs nothing: no quota, no reservation, no room in a shared pool, no spend.", "0.01"),
    f("server", "daily_reset_tz", "IANA time zone", "\"America/Los_Angeles\"", "Where requests per day reset at midnight (DST included).", "\"UTC\""),
    f("server", "latency", "table", "ttft 800ms, 150 tokens/s, jitter 0.2", "See `server.latency`.", ""),
    f("server", "quirks", "table", "all off but per_day_retry", "See `server.quirks`.", ""),
    f("server", "live", "table", "Google's documented values; undocumented ones as below", "See `server.live`.", ""),
    f("server.live", "setup", "duration", "\"300ms\"", "From the client's `setup` message to `setupComplete` (the simulation checks quota and takes the slot at connect).", "\"1s\""),
    f("server.live", "reject_delay", "duration", "\"800ms\"", "From `setupComplete` to the close 1011 of a session refused for quota (users see about 0.8 s).", "\"0s\""),
    f("server.live", "quota_check", "\"setup\" | \"connect\"", "\"setup\"", "Where a refused session learns it: after `setupComplete`, close 1011 with the 123-byte truncated reason (what users report); or HTTP 429 at the upgrade, which clients report as close 1006.", "\"connect\""),
    f("server.live", "release", "duration", "\"0s\"", "How long a session's slot stays taken after the session is over (undocumented).", "\"30s\""),
    f("server.live", "early_close", "\"holds_turn\" | \"releases\"", "\"holds_turn\"", "Whether a turn the client closed on before `turnComplete` runs on, holding the session's slot until it would have completed (undocumented; the default explains a one-session loop's 1011s), or ends with the close.", "\"releases\""),
    f("server.live", "lifetime", "duration", "\"10m\"", "How long a connection lasts: `goAway` before it, then close 1008.", "\"15m\""),
    f("server.live", "go_away", "duration", "\"50s\"", "How long before the lifetime's end `goAway` comes (its `timeLeft`).", "\"60s\""),
    f("server.live", "audio_cap", "duration", "\"15m\"", "Longest audio session (text sessions too); the server ends it.", "\"30m\""),
    f("server.live", "video_cap", "duration", "\"2m\"", "Longest audio + video session.", "\"5m\""),
    f("server.live", "audio_tokens_per_second", "integer ≥ 1", "32", "Audio tokens per second of speech: a turn of N output tokens plays N / this seconds, and `turnComplete` comes when it has played (from the first token on).", "25"),
    f("server", "paygo", "table", "none (Tier 1 and the defaults below)", "See `server.paygo`.", ""),
    f("server.paygo", "tier", "1 | 2 | 3", "1", "The organisation's usage tier. Give it or `spend_30d`, not both.", "2"),
    f("server.paygo", "spend_30d", "number ≥ 0 (USD)", "none", "The organisation's spend over the last 30 days, from which the tier follows: below $250 Tier 1 (below the table's $10 too: an assumption), $250 to $2,000 Tier 2, above $2,000 Tier 3.", "1200.0"),
    f("server.paygo", "system_rpm", "integer ≥ 1", "30000", "Requests per minute per model per region, whatever the tier or header (Google: 30,000); beyond it (or beyond its spike allowance) a 429 without details.", "30000"),
    f("server.paygo", "spike", "number 1 to 60", "2", "The spike rule, which Google does not publish (\"second-level spikes can throttle even under the per-minute average\"): any 1 s may hold at most spike × limit / 60 of a per-minute limit (the tier's tokens, the system limit's requests, Priority PayGo's tokens). 1: no second above the minute's average rate; 60: only the minute counts. The default 2 is an assumption.", "1.5"),
    f("server.paygo", "priority_price", "number 1 to 10", "1.8", "Priority PayGo's price as a multiple of the model's prices, charged against spend caps (Google: \"a higher rate than Standard PayGo\"; AI Studio's Priority is +75–100%; the default +80% is an assumption).", "2.0"),
    f("server", "spend_window", "duration", "\"10m\"", "The rolling window an account's `spend_cap` limits (Google: 10 minutes).", "\"10m\""),
    f("server", "openai_errors", "\"array\" | \"bare_array\" | \"object\"", "\"array\"", "The body of an error on serve's OpenAI-compatible endpoint: Google's envelope with its details in a one-element array (2026 reports), the array with a bare message and no details (2025 reports: no retry delay to read), or the envelope alone. Google has not documented it.", "\"bare_array\""),
    f("server", "embed_batch", "\"each\" | \"one\"", "\"each\"", "How a call with several texts to embed (`batchEmbedContents`, OpenAI embeddings) counts: each text one request with its tokens, or the call one request. Google has not documented it.", "\"one\""),
    f("server", "standard_keys", "\"accepted\" | \"refused\"", "\"accepted\"", "What serve does with a standard key (`AIza…`): accept it, or answer 401 UNAUTHENTICATED with reason ACCESS_TOKEN_TYPE_UNSUPPORTED as Google has since 2026-06 (unrestricted keys) and 2026-09 (all). Any key format is accepted otherwise; derived keys are `AIza…`, so with \"refused\" give `AQ.…` keys in `[[topology.keys]]`.", "\"refused\""),
    f("server", "error_latency", "duration", "\"0s\"", "How long a REST answer that is not a success (429, 400, 403, 404, 503) takes to reach its client in a simulation and at serve: 0, at the send's instant. A real one takes a round trip (tens to hundreds of ms), in which the later sends of a burst leave before the first 429 is back; Live sessions have `server.live.reject_delay`.", "\"150ms\""),
    f("server", "spend_delay", "duration", "\"0s\"", "How late spend reaches the cap's check (Google warns billing data can lag about 10 minutes): a spend made at t is seen from t + spend_delay on, and meanwhile the cap can be overrun.", "\"10m\""),
    f("server.latency", "ttft", "duration", "\"800ms\"", "Time to the first token.", "\"1.2s\""),
    f("server.latency", "tokens_per_second", "number > 0", "150", "Output tokens generated per second.", "90"),
    f("server.latency", "jitter", "number 0 to 3", "0.2", "Sigma of the lognormal factor (0 = every response takes exactly the base time).", "0.5"),
    f("server.quirks", "per_day_retry", "\"next_minute\" | \"reset\" | duration", "\"next_minute\"", "What the RetryInfo of a 429 naming rpd or tpd says (per-minute dimensions named with them or not). next_minute: the time to the next calendar minute, as Google's per-day 429s did in 2026 (`36s` on a `…PerDay…-FreeTier` quota id); reset: the exact delay (the daily reset, or sooner if a reservation admits it); a duration: always that, e.g. \"0s\" as seen in 2025. Classify a 429 by its quota id, not its delay.", "\"reset\""),
    f("server.quirks", "per_minute_retry", "duration", "none (the exact delay)", "A per-minute 429's RetryInfo says this instead, e.g. \"86400s\": a 429 naming rpm or tpm and neither rpd nor tpd (`per_day_retry` wins when both apply).", "\"86400s\""),
    f("server.quirks", "zero_quota_retry", "duration", "none (no RetryInfo)", "A 429 for a quota of 0 still says \"Please retry in\" this and carries RetryInfo.", "\"25s\""),
    f("server.quirks", "capacity_rate", "number 0 to 1", "0", "Probability that a request within every quota gets a 429 without details (\"Resource exhausted, please try again later.\"), not charged.", "0.01"),
    f("models.<name>", "rpm", "integer", "unlimited", "Requests per minute per project.", "10"),
    f("models.<name>", "tpm", "integer", "unlimited", "Tokens per minute per project (what `server.tpm_counts` says).", "250_000"),
    f("models.<name>", "rpd", "integer", "unlimited", "Requests per day per project, reset at midnight in `server.daily_reset_tz`.", "250"),
    f("models.<name>", "tpd", "integer", "unlimited", "Tokens per day per project (what TPM counts), reset with requests per day; a 429 naming GenerateContentInputTokensPerModelPerDay.", "6_000_000"),
    f("models.<name>", "concurrent", "integer", "unlimited", "Requests in flight at once.", "3"),
    f("models.<name>", "concurrent_scope", "\"project\" | \"key\"", "\"project\"", "Whether the concurrency limit is shared by a project's keys or held by each key.", "\"key\""),
    f("models.<name>", "latency", "table", "the server's", "This model's response time (see `server.latency`).", "{ ttft = \"2s\", tokens_per_second = 60 }"),
    f("models.<name>", "shared_pool", "table", "none (per-project quotas)", "See `models.<name>.shared_pool`.", ""),
    f("models.<name>", "provisioned", "table", "none", "See `models.<name>.provisioned`.", ""),
    f("models.<name>", "price_input", "number ≥ 0", "0", "USD per million input tokens, charged against the account's spend cap (to 10⁻⁶ USD).", "0.30"),
    f("models.<name>", "live", "boolean", "false", "A Live API model: its calls are WebSocket sessions (a `sessions` workload; `serve`'s BidiGenerateContent), `concurrent` counts open sessions, `rpm`/`rpd` count session starts and `tpm` a session's input tokens, charged at setup.", "true"),
    f("models.<name>", "price_changes", "array of tables", "none", "Prices that change on a date: each `{ from = \"<RFC 3339>\", price_input, price_output }` (USD per million tokens, as `price_input`/`price_output`) is in force from `from` on, in increasing order; a change before the start applies from it. A spend cap charges the price in force at the request's instant (gemini-4-argon: $2/$10 until 2026-11-30, $4/$20 from 2026-12-01).", "[{ from = \"2026-12-01T00:00:00-08:00\", price_input = 4.0, price_output = 20.0 }]"),
    f("models.<name>", "routed_to", "model name", "none", "A retired model id that Google serves silently with another model of the scenario (2026-10-08: gemini-3.5-flash → gemini-3.6-flash, gemini-3.7-flash → gemini-3.8-flash): its calls get that model's latency and prices, and draw on the quotas `routed_quota` says. Neither may be a Live model, nor the target re-routed itself.", "\"gemini-3.6-flash\""),
    f("models.<name>", "routed_quota", "\"target\" | \"own\"", "\"target\"", "Whose quotas a re-routed call draws on, which Google does not say: the serving model's (calls under both ids share its budget), or the retired id's own limits.", "\"own\""),
    f("models.<name>", "price_output", "number ≥ 0", "0", "USD per million output tokens (the response's length), charged likewise when the request is admitted.", "2.50"),
    f("models.<name>", "paygo", "table", "none", "See `models.<name>.paygo`.", ""),
    f("models.<name>.paygo", "family", "\"pro\" | \"flash\" | \"flash_lite\"", "(required)", "The model's column of the tier table: Pro 500K / 1M / 2M tokens per minute for Tiers 1 / 2 / 3; Flash and Flash-Lite 2M / 4M / 10M. Each model has its own throughput.", "\"flash\""),
    f("models.<name>.paygo", "tpm", "integer ≥ 1", "the tier table's", "The model's prioritized throughput instead of the table's (a custom tier).", "3_000_000"),
    f("models.<name>.paygo", "priority_tpm", "integer ≥ 1", "none (no limit of its own)", "Tokens per minute Priority PayGo serves the model at most (with the spike rule); a priority request beyond it is served as a standard one. Google publishes no such limit.", "1_000_000"),
    f("models.<name>.shared_pool", "capacity", "integer ≥ 1", "(required)", "Requests per minute the pool serves, every tenant together.", "600"),
    f("models.<name>.shared_pool", "others", "number 0 to 2", "0.5", "The other tenants' mean load, as a share of the capacity.", "0.8"),
    f("models.<name>.shared_pool", "swing", "number 0 to 1", "0", "Amplitude of their daily swing (share of capacity), highest at 14:00 in `server.daily_reset_tz`.", "0.15"),
    f("models.<name>.shared_pool", "bursts_per_hour", "number 0 to 3600", "0", "Their bursts, a Poisson process (seeded).", "3"),
    f("models.<name>.shared_pool", "burst", "duration", "\"2m\"", "How long a burst lasts.", "\"3m\""),
    f("models.<name>.shared_pool", "burst_load", "number 0 to 2", "0", "What a burst adds (share of capacity).", "0.3"),
    f("models.<name>.provisioned", "rpm", "integer ≥ 1", "none", "Requests per minute reserved per project.", "120"),
    f("models.<name>.provisioned", "tpm", "integer ≥ 1", "none", "Input tokens per minute reserved per project, whatever `server.tpm_counts` makes the quotas count (Gemini's TPM metrics count input tokens).", "400_000"),
    f("models.<name>.provisioned", "overflow", "\"spill\" | \"dedicated_only\"", "\"spill\"", "A request the reservation cannot take goes on to the shared pool or the quotas (Vertex's default), or gets a 429 without details (a request sent dedicated only).", "\"dedicated_only\""),
    f("topology", "keys_per_project", "integer ≥ 1", "1", "Keys generated for every project (their strings are listed by `flux-sim keys`).", "2"),
    f("topology", "projects", "integer or list of names", "none", "Projects of an implicit account named `default`: a count (named default-1, default-2, …) or names.", "4 or [\"a\", \"b\"]"),
    f("topology", "accounts", "array of tables", "none", "See `topology.accounts[]`. At least one of `projects` and `accounts` is needed.", ""),
    f("topology", "keys", "array of tables", "none", "See `topology.keys[]`.", ""),
    f("topology", "project", "table of tables", "none", "See `topology.project.<name>`.", ""),
    f("topology", "spend_cap", "number > 0", "none", "USD an account may spend per `server.spend_window` (tier 1: $10), for every account that sets none itself, rounded to 10⁻⁶ USD. A request whose price would take the spend the check sees past it gets a 429 without details; reaching it exactly is allowed. Checked after the quotas (a request they refuse gets their 429) and before the capacity quirk and 503s; a request refused or failed spends nothing.", "10"),
    f("topology.accounts[]", "name", "string", "(required)", "The account's name.", "\"studio-main\""),
    f("topology.accounts[]", "projects", "integer or list of names", "(required)", "Its projects: a count (named <account>-1, …) or names.", "6"),
    f("topology.accounts[]", "spend_cap", "number > 0", "`topology.spend_cap`", "This billing account's spend cap, USD per `server.spend_window`.", "10"),
    f("topology.project.<name>", "keys", "integer", "`keys_per_project`", "Valid keys generated for this project.", "3"),
    f("topology.project.<name>", "invalid_keys", "integer", "0", "Invalid keys (answered 400 API_KEY_INVALID) added to this project.", "1"),
    f("topology.project.<name>", "rpd_used", "integer", "0", "Requests already spent today at `start` (every model).", "200"),
    f("topology.project.<name>", "tier", "\"free\" | \"tier1\" | \"tier2\" | \"tier3\"", "\"free\"", "Names the quota ids and metrics in `serve`'s 429 bodies; it does not change the limits (set those in `limits`).", "\"tier1\""),
    f("topology.project.<name>", "limits", "table of limits per model", "the model's", "Overrides of this project's limits, per model (see `limits`).", "{ \"gemini-2.5-flash\" = { rpm = 1000 } }"),
    f("limits", "rpm", "integer", "inherited", "Requests per minute.", "1000"),
    f("limits", "tpm", "integer", "inherited", "Tokens per minute.", "1_000_000"),
    f("limits", "rpd", "integer", "inherited", "Requests per day.", "10_000"),
    f("limits", "tpd", "integer", "inherited", "Tokens per day (every dimension given overrides the model's, the others stay).", "6_000_000"),
    f("limits", "concurrent", "integer", "inherited", "Requests in flight at once.", "50"),
    f("topology.keys[]", "project", "string", "(required)", "The project the key belongs to.", "\"studio-main-1\""),
    f("topology.keys[]", "key", "string of 8+ characters, no spaces", "a derived key", "The key string (masked whenever shown).", "\"AIza…\""),
    f("topology.keys[]", "invalid", "boolean", "false", "Answered 400 API_KEY_INVALID.", "true"),
    f("workload", "kind", "\"closed\" | \"open\" | \"trace\" | \"sessions\"", "(required)", "closed: a batch drained by workers; open: Poisson arrivals at a rate; trace: arrivals read from a CSV; sessions: Live sessions (on `live` models), from `clients` that reconnect or arriving at a `rate`.", "\"closed\""),
    f("workload", "rate", "number > 0", "(required for open)", "Open: arrivals per minute (during \"on\" periods if bursts are set).", "40"),
    f("workload", "duration", "duration", "(required for open); trace: last arrival + `tail`", "Open and trace: how long the run lasts; what is unfinished then is `pending`.", "\"2h\""),
    f("workload", "burst_on", "duration", "no bursts", "Open: length of an \"on\" period (give `burst_off` too).", "\"5m\""),
    f("workload", "burst_off", "duration", "no bursts", "Open: length of an \"off\" period without arrivals.", "\"25m\""),
    f("workload", "requests", "integer ≥ 1", "(required for closed); open: no cap", "Closed: the batch size. Open: stop arrivals after this many.", "1_800"),
    f("workload", "workers", "integer ≥ 1", "(required for closed)", "Closed: how many requests are worked on at once (each worker takes the next request when its current one ends). It caps parallelism: it changes answers.", "64"),
    f("workload", "path", "path", "(required for trace)", "Trace: the CSV (relative to the scenario), header `arrival_s,input_tokens,output_tokens[,model]`.", "\"traces/day.csv\""),
    f("workload", "tail", "duration", "\"60s\" (trace)", "Trace, without `duration`: how long the run goes on after the last arrival.", "\"10m\""),
    f("workload", "sessions", "integer ≥ 1", "(required with clients); with rate: no cap", "Sessions: how many sessions in all (with `clients`), or the cap on arrivals (with `rate`).", "200"),
    f("workload", "clients", "integer ≥ 1", "(required without rate)", "Sessions: clients that each open their next session when the last one ends (a closed loop).", "15"),
    f("workload", "turns", "integer 1 to 10,000", "1", "Sessions: turns per session, each of `input_tokens` in and `output_tokens` out.", "6"),
    f("workload", "pause", "duration", "\"0s\"", "Sessions: after a turn, how long the client takes before sending the next (the user talking).", "\"20s\""),
    f("workload", "hold", "duration", "\"0s\"", "Sessions: how long the client keeps the session open after its last turn.", "\"1m\""),
    f("workload", "modality", "\"audio\" | \"audio_video\" | \"text\"", "\"audio\"", "Sessions: spoken answers (a turn completes when its audio has played), spoken answers to audio and video (2 min cap), or text.", "\"text\""),
    f("workload", "close_after", "\"turn_complete\" | \"generation_complete\"", "\"turn_complete\"", "Sessions: whether the client reads its last turn until `turnComplete` or leaves at `generationComplete`.", "\"generation_complete\""),
    f("workload", "priority", "number 0 to 1", "0", "The share of requests sent with Vertex AI's Priority PayGo header (`X-Vertex-AI-LLM-Shared-Request-Type: priority`), drawn per request; only for models on PayGo.", "0.25"),
    f("workload", "input_tokens", "token distribution", "(required for closed and open)", "Prompt sizes (see `tokens`).", "{ dist = \"fixed\", value = 1000 }"),
    f("workload", "output_tokens", "token distribution", "(required for closed and open)", "Response sizes (see `tokens`).", "{ dist = \"uniform\", min = 100, max = 400 }"),
    f("workload", "model", "model name", "the only model", "The model every request wants (required when there are several and no `models`).", "\"gemini-2.5-flash\""),
    f("workload", "models", "array of tables", "none", "A weighted choice instead of `model` (see `workload.models[]`).", ""),
    f("workload.models[]", "name", "model name", "(required)", "A model.", "\"gemini-2.5-pro\""),
    f("workload.models[]", "weight", "integer ≥ 1", "(required)", "Its relative share of requests.", "3"),
    f("tokens", "dist", "\"fixed\" | \"uniform\" | \"lognormal\"", "(required)", "The distribution.", "\"lognormal\""),
    f("tokens", "value", "integer", "(required for fixed)", "Fixed: every request has this many.", "1000"),
    f("tokens", "min", "integer", "uniform: (required); lognormal: 1", "Uniform: the least; lognormal: draws are clamped up to it.", "100"),
    f("tokens", "max", "integer", "uniform: (required); lognormal: no cap", "Uniform: the most; lognormal: draws are clamped down to it.", "240_000"),
    f("tokens", "median", "number ≥ 1", "(required for lognormal)", "Lognormal: the median.", "40_000"),
    f("tokens", "p99", "number ≥ median", "(required for lognormal)", "Lognormal: the 99th percentile.", "120_000"),
    f("strategies[]", "name", "string", "the kind's name", "A unique display name.", "\"gemini-flux\""),
    f("strategies[]", "kind", "a built-in kind", "(required)", "The algorithm: round_robin, fixed_interval, exact_cooldown, gemini_flux, backoff, token_bucket, litellm_shuffle, litellm_least_busy, litellm_usage, gemini_balance, live_reconnect, live_mixer or flux (`flux-sim strategies` describes each; a kind whose tool cannot open a Live session is refused on a Live workload, and the two Live-only kinds on a REST one).", "\"flux\""),
    f("strategies[]", "interval", "duration", "(required for fixed_interval; the built-in uses \"30s\")", "fixed_interval: a key is reused only this long after its last use.", "\"30s\""),
    f("strategies[]", "compat", "\"gemini-flux\"", "none", "exact_cooldown: shorthand for kind = \"gemini_flux\".", "\"gemini-flux\""),
    f("strategies[]", "preset", "\"sdk\"", "\"sdk\"", "backoff: google-genai's HttpRetryOptions() as the retry policy (5 attempts, 1 s doubling to 60 s plus up to 1 s); give it or a retry table.", "\"sdk\""),
    f("strategies[]", "margin", "duration", "\"0s\"", "exact_cooldown, flux: hold every window entry this much longer than 60 s (for real networks; see `drive --margin`).", "\"250ms\""),
    f("strategies[]", "cooldown_time", "duration > 0", "\"5s\"", "litellm_*: the Router's `cooldown_time`, how long a failing deployment (key) is skipped.", "\"60s\""),
    f("strategies[]", "allowed_fails", "integer", "(unset: failure-rate rules)", "litellm_*: the Router's `allowed_fails`: a deployment cools down at its failure number allowed_fails + 1 within cooldown_time; unset, a 429 (unless the key is the only one), an invalid key, or a minute with more than half of at least 5 requests failed cools it.", "3"),
    f("strategies[]", "num_retries", "integer", "2", "litellm_*: the Router's `num_retries`, attempts after the first (sets the retry policy; not with `retry`).", "5"),
    f("strategies[]", "retry_after", "duration", "\"0s\"", "litellm_*: the Router's `retry_after`, the least wait before a retry (not with `retry`).", "\"2s\""),
    f("strategies[]", "max_failures", "integer ≥ 1", "3", "gemini_balance: its `MAX_FAILURES`: a key that failed this many times is skipped until the hourly check (gemini-balance's .env.example sets 10).", "10"),
    f("strategies[]", "fallback", "list of model names", "none", "exact_cooldown, gemini_flux, flux: models to fall back to, in order, when a model's daily quota is gone (gemini_flux: its model chain).", "[\"gemini-2.5-flash-lite\"]"),
    f("strategies[]", "known_limits", "table of limits per model", "the true limits", "What the strategy believes the limits are (see `limits`), per model. flux probes such told limits and learns the true ones from 429s.", "{ \"gemini-2.5-flash\" = { rpm = 15 } }"),
    f("strategies[]", "retry", "table", "what the modelled tool does: exact_cooldown retry_info; flux, gemini_flux, litellm_*, gemini_balance immediate; token_bucket none; live_reconnect, live_mixer backoff 1 s→60 s +0..1 s without a limit; others google-genai's (preset sdk)", "See `strategies[].retry`.", ""),
    f("strategies[].retry", "policy", "\"none\" | \"immediate\" | \"backoff\" | \"retry_info\"", "(required)", "none: give up at the first error; immediate: retry at once; backoff: truncated exponential; retry_info: wait the server's RetryInfo delay (errors without one back off).", "\"backoff\""),
    f("strategies[].retry", "base", "duration", "\"1s\"", "backoff, retry_info: the first delay.", "\"2s\""),
    f("strategies[].retry", "cap", "duration", "\"60s\"", "backoff, retry_info: the largest delay.", "\"5m\""),
    f("strategies[].retry", "jitter", "\"full\" | \"equal\" | \"none\" | \"decorrelated\" | duration", "\"full\"", "backoff: uniform in [0, d], d/2 plus uniform in [0, d/2], exactly d, uniform in [base, 3 × the previous delay] (AWS's decorrelated), or d plus uniform in [0, duration] (tenacity's, as google-genai uses), each capped.", "\"equal\""),
    f("strategies[].retry", "max_attempts", "integer ≥ 1", "immediate 10, backoff 5, retry_info unlimited", "Attempts in all, the first included.", "8"),
    f("", "fleet", "table", "one instance", "See `fleet`.", ""),
    f("fleet", "instances", "integer 1 to 1,000", "1", "Copies of each strategy, each taking every instances-th request.", "4"),
    f("fleet", "ledger", "\"local\" | \"shared\" | \"rpm_shared\"", "\"local\"", "What the copies share: nothing (every rotator today), every count (LiteLLM with Redis), or request counts with token counts local (LiteLLM #40291: its TPM check read local memory only).", "\"shared\""),
    f("fleet", "sync_delay", "duration", "\"1s\" (LiteLLM's Redis sync)", "With a shared ledger: how long after one copy sends, withdraws or ends a request the others see it (counted from when it happened).", "\"0s\""),
];

/// The limits a scenario must stay within, as (what, the most allowed).
fn limits() -> Vec<(&'static str, String)> {
    use super::validate::max;
    use crate::core::time::format_exact as d;
    vec![
        (
            "any span: horizon, workload.duration, burst_on, burst_off, tail",
            d(max::SPAN),
        ),
        ("ttft, retry base and cap, fixed_interval's interval", d(max::DELAY)),
        ("exact_cooldown's margin", d(max::MARGIN)),
        ("tokens_per_second (the least)", max::MIN_TOKENS_PER_SECOND.to_string()),
        ("input tokens of one request", max::INPUT_TOKENS.to_string()),
        ("output tokens of one response", max::OUTPUT_TOKENS.to_string()),
        (
            "requests of a workload (an open one: rate × duration)",
            max::REQUESTS.to_string(),
        ),
        ("workers", max::WORKERS.to_string()),
        ("projects", max::PROJECTS.to_string()),
        ("keys", max::KEYS.to_string()),
        ("retry max_attempts", max::ATTEMPTS.to_string()),
        ("scenario file", format!("{} MiB", max::SCENARIO_BYTES >> 20)),
        ("trace CSV", format!("{} MiB", max::TRACE_BYTES >> 20)),
    ]
}

/// The reference as Markdown: one table of fields per scenario table, then the limits.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Scenario reference\n\nEvery field a scenario file may hold (generated by `flux-sim reference`; a test keeps it \
         equal to what the loader reads). Every table rejects unknown fields. Durations are strings such as \
         `\"500ms\"`, `\"90s\"`, `\"10m\"`, `\"2h\"`, `\"7d\"`. `flux-sim init FILE` writes a commented scenario to start from.\n",
    );
    for (table, about) in TABLES {
        let title = if table.is_empty() { "top level" } else { table };
        out.push_str(&format!("\n## `{title}`\n\n{about}\n\n"));
        out.push_str("| field | type | default | meaning | example |\n|---|---|---|---|---|\n");
        for x in FIELDS.iter().filter(|x| x.table == table) {
            let cell = |s: &str| s.replace('|', "\\|");
            let example = if x.example.is_empty() {
                String::new()
            } else {
                format!("`{}`", x.example)
            };
            out.push_str(&format!(
                "| `{}` | {} | {} | {} | {} |\n",
                x.name,
                cell(x.ty),
                cell(x.default),
                cell(x.meaning),
                cell(&example)
            ));
        }
    }
    out.push_str(
        "\n## Limits\n\nPast these a run cannot fit in memory or finish in reasonable time (or a number stops \
         meaning anything); a scenario asking for more is refused with the field and the limit named.\n\n\
         | what | the most allowed |\n|---|---|\n",
    );
    for (what, most) in limits() {
        out.push_str(&format!("| {what} | {most} |\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::schema::*;
    use serde::de::{self, Deserialize, Visitor};

    /// A deserializer that only records the field names serde asks a struct for.
    struct Fields(Vec<&'static str>);

    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("stop")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<T: std::fmt::Display>(_: T) -> Self {
            Stop
        }
    }

    impl<'de> de::Deserializer<'de> for &mut Fields {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0 = fields.to_vec();
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }

    fn fields_of<T: for<'de> Deserialize<'de>>() -> Vec<&'static str> {
        let mut d = Fields(Vec::new());
        let _ = T::deserialize(&mut d);
        let mut v = d.0;
        v.sort_unstable();
        v
    }

    #[test]
    fn the_reference_lists_exactly_the_fields_the_loader_reads() {
        let schema: Vec<(&str, Vec<&str>)> = vec![
            ("", fields_of::<RawScenario>()),
            ("server", fields_of::<RawServer>()),
            ("server.latency", fields_of::<RawLatency>()),
            ("server.live", fields_of::<RawLive>()),
            ("server.paygo", fields_of::<RawPaygo>()),
            ("server.quirks", fields_of::<RawQuirks>()),
            ("models.<name>", fields_of::<RawModel>()),
            ("models.<name>.shared_pool", fields_of::<RawSharedPool>()),
            ("models.<name>.provisioned", fields_of::<RawProvisioned>()),
            ("models.<name>.paygo", fields_of::<RawModelPaygo>()),
            ("topology", fields_of::<RawTopology>()),
            ("topology.accounts[]", fields_of::<RawAccount>()),
            ("topology.project.<name>", fields_of::<RawProjectSettings>()),
            ("limits", fields_of::<RawLimits>()),
            ("topology.keys[]", fields_of::<RawKey>()),
            ("workload", fields_of::<RawWorkload>()),
            ("workload.models[]", fields_of::<RawWeightedModel>()),
            ("tokens", fields_of::<RawTokens>()),
            ("strategies[]", fields_of::<RawStrategy>()),
            ("strategies[].retry", fields_of::<RawRetry>()),
            ("fleet", fields_of::<RawFleet>()),
        ];
        assert_eq!(schema.len(), TABLES.len());
        for ((table, read), (listed_table, _)) in schema.iter().zip(TABLES) {
            assert_eq!(*table, listed_table, "TABLES and the schema in the same order");
            assert!(!read.is_empty(), "{table}: no fields introspected");
            let mut documented: Vec<&str> = FIELDS.iter().filter(|x| x.table == *table).map(|x| x.name).collect();
            documented.sort_unstable();
            assert_eq!(
                &documented, read,
                "`{table}`: the reference must list exactly the fields the loader reads"
            );
        }
        for x in FIELDS {
            assert!(
                !x.meaning.is_empty() && !x.default.is_empty() && !x.ty.is_empty(),
                "{x:?}"
            );
        }
    }

    #[test]
    fn the_committed_reference_is_the_generated_one() {
        let committed = include_str!("../../scenarios/REFERENCE.md");
        assert!(
            committed == markdown(),
            "scenarios/REFERENCE.md is stale: run `cargo run --release -- reference > scenarios/REFERENCE.md`"
        );
    }

    #[test]
    fn the_kinds_listed_are_the_registry() {
        let kind = FIELDS
            .iter()
            .find(|x| x.table == "strategies[]" && x.name == "kind")
            .expect("strategies[].kind documented");
        let names: Vec<&str> = crate::strategy::KINDS.iter().map(|d| d.name).collect();
        let (last, rest) = names.split_last().expect("a kind");
        let list = format!("The algorithm: {} or {last} (", rest.join(", "));
        assert!(
            kind.meaning.starts_with(&list),
            "{:?} should start {list:?}",
            kind.meaning
        );
    }
}
