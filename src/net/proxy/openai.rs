//! The proxy's OpenAI-compatible routes, as Gemini offers them under `/{version}/openai/` (the
//! openai SDK with `base_url=…/v1beta/openai/`): chat completions and embeddings are
//! scheduled, counted and sent exactly as generateContent is (same strategy, gate and shared
//! ledger; input tokens by serve's rule, `max_completion_tokens`/`max_tokens` as the output
//! asked for; embeddings counted per input as serve counts them), forwarded with
//! the chosen key as the bearer token, and their answers (streams included) passed through;
//! the models list passes straight through with any key. The client's token comes as
//! `Authorization: Bearer <token>` or where the native routes take it.

use super::*;

/// The token of a request on these routes: the bearer token, else the native places. A
/// missing or wrong one is a 401, as Google answers on this endpoint.
fn check_bearer(p: &Proxy, headers: &HeaderMap, query: &[(String, String)]) -> Result<(), Value> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let ok = match bearer {
        Some(t) => t == p.token,
        None => check_token(p, headers, &keys_of(query)).is_ok(),
    };
    if ok {
        Ok(())
    } else {
        Err(wire::openai::unauthenticated())
    }
}

/// `POST /{version}/openai/chat/completions`.
pub(super) async fn chat(
    State(p): State<Arc<Proxy>>,
    version: Result<Path<String>, PathRejection>,
    q: RawQuery,
    req: Request,
) -> Response {
    scheduled(p, version, q, req, "chat/completions").await
}

/// `POST /{version}/openai/embeddings`: counted as serve counts it (each input one request,
/// or the call one: `server.embed_batch`; tokens by serve's rule).
pub(super) async fn embeddings(
    State(p): State<Arc<Proxy>>,
    version: Result<Path<String>, PathRejection>,
    q: RawQuery,
    req: Request,
) -> Response {
    scheduled(p, version, q, req, "embeddings").await
}

/// What a call to `endpoint` asks: its model's name, input tokens, output tokens asked for and
/// the requests it counts for; `Err` the message of a 400.
fn cost_of(p: &Proxy, endpoint: &str, body: &[u8]) -> Result<(String, u64, u64, u64), String> {
    if endpoint == "embeddings" {
        let e = wire::openai::parse_embeddings(body)?;
        let (requests, tokens) = embed_cost(p, &e.inputs);
        return Ok((e.model, tokens, 0, requests));
    }
    let c = wire::openai::parse_chat(body)?;
    Ok((c.model, c.input_tokens, c.max_tokens.unwrap_or(0), 1))
}

/// A scheduled call to `/{version}/openai/{endpoint}`: checked, parsed, then scheduled as
/// generateContent is.
async fn scheduled(
    p: Arc<Proxy>,
    version: Result<Path<String>, PathRejection>,
    q: RawQuery,
    req: Request,
    endpoint: &'static str,
) -> Response {
    let (version, q) = match (path_of(version), query_of(&q)) {
        (Ok(v), Ok(q)) => (v, q),
        (Err(e), _) | (_, Err(e)) => return error(e),
    };
    // The path and the token first: a stranger's body is never read.
    if let Err(e) = classify_version(&version).and_then(|()| check_bearer(&p, req.headers(), &q)) {
        return error(e);
    }
    let body = match crate::net::http::read_body(&p.bodies, req).await {
        Ok(b) => b,
        Err(e) => return error(e),
    };
    let proxy = p.clone();
    let (name, input, output, requests) = match parse_body(&p, &body, move |b| cost_of(&proxy, endpoint, b)).await {
        Ok(Ok(r)) => r,
        Ok(Err(m)) => return error(wire::error::invalid_argument(&m)),
        Err(e) => return error(e),
    };
    let Some(model) = p.scenario.model_index(&name) else {
        let method = if endpoint == "embeddings" {
            "embedContent"
        } else {
            "generateContent"
        };
        return error(wire::error::unknown_model(&name, &version, method));
    };
    let Ok(_held) = p.held.try_acquire_many((body.len().div_ceil(1024) as u32).max(1)) else {
        p.count("memory_full");
        p.stats().refused(model, None, Refusal::MemoryFull);
        return refusal(
            "flux-sim proxy: too many request bytes are waiting; retry shortly.",
            Some(crate::core::time::SECOND),
        );
    };
    let target = Target::OpenAi {
        version: &version,
        endpoint,
    };
    schedule(p.clone(), target, model, input, output, requests, body).await
}

/// `GET /{version}/openai/models`: passed through with any key.
pub(super) async fn models(
    State(p): State<Arc<Proxy>>,
    version: Result<Path<String>, PathRejection>,
    q: RawQuery,
    headers: HeaderMap,
) -> Response {
    let (version, q) = match (path_of(version), query_of(&q)) {
        (Ok(v), Ok(q)) => (v, q),
        (Err(e), _) | (_, Err(e)) => return error(e),
    };
    if let Err(e) = classify_version(&version).and_then(|()| check_bearer(&p, &headers, &q)) {
        return error(e);
    }
    let Some(key) = any_key(&p) else {
        return error(wire::error::upstream_unreachable("the configuration has no valid key"));
    };
    p.count("forwarded_openai_models");
    let url = upstream_url(&p, &[&version, "openai", "models"], &q);
    let r = p.client.get(url).header(header::AUTHORIZATION, format!("Bearer {key}"));
    match tokio::time::timeout(Duration::from_nanos(p.deadline), r.send()).await {
        Ok(Ok(resp)) => pass_through(resp),
        Ok(Err(e)) => error(wire::error::upstream_unreachable(&describe(e))),
        Err(_) => {
            p.count("upstream_timeout");
            error(upstream_timeout(p.deadline))
        }
    }
}
