//! serve's OpenAI-compatible endpoint, as Gemini offers it under `/v1beta/openai/`: chat
//! completions (plain, streamed as SSE ending in `data: [DONE]`, JSON by `response_format`),
//! the models list and embeddings, on the same ledger as the native endpoint. The key comes
//! as `Authorization: Bearer <key>` (or as the native endpoint takes it); errors are Google's
//! envelopes in the shape `server.openai_errors` names.

use super::*;

/// The routes under `/{version}/openai/`.
pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/{version}/openai/chat/completions", axum::routing::post(chat))
        .route("/{version}/openai/embeddings", axum::routing::post(embeddings))
        .route("/{version}/openai/models", get(models))
        .route("/{version}/openai/models/{*id}", get(model))
}

/// An error in the endpoint's shape, with its code as the HTTP status.
fn fail(s: &Shared, envelope: Value) -> Response {
    let code = envelope["error"]["code"].as_u64().unwrap_or(500) as u16;
    json_response(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &openai::error_body(envelope, s.scenario.wire.openai_errors),
    )
}

/// The version and key of a request: the bearer token, else `x-goog-api-key` or `?key=`. A
/// missing or unknown key is a 401 here (the OpenAI SDK's `AuthenticationError`).
fn gate_bearer(s: &Shared, version: &str, headers: &HeaderMap, q: &BTreeMap<String, String>) -> Result<usize, Value> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let given = match bearer {
        Some(k) => check_version(version).and_then(|()| known_key(s, k)),
        None => gate(s, version, headers, q),
    };
    given.map_err(|e| match e["error"]["code"].as_u64() {
        Some(400 | 403) => openai::unauthenticated(),
        _ => e,
    })
}

/// Path, query and key of a request, or the error to answer.
fn checked(
    s: &Shared,
    version: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
    q: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<usize, Value> {
    let (version, q) = match (path_of(version), query_of(q)) {
        (Ok(v), Ok(q)) => (v, q),
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    gate_bearer(s, &version, headers, &q)
}

/// Key, model and parsed body of a POST (`parse` reads the body, `model` names its model),
/// or the error to answer.
async fn accept<T: Send + 'static>(
    s: &Shared,
    version: Result<Path<String>, PathRejection>,
    q: Result<Query<BTreeMap<String, String>>, QueryRejection>,
    req: Request,
    parse: fn(&[u8]) -> Result<T, String>,
    model: fn(&T) -> &str,
) -> Result<(usize, usize, T), Response> {
    let key = checked(s, version, req.headers(), q).map_err(|e| fail(s, e))?;
    let body = read_body(s, req).await.map_err(|e| fail(s, e))?;
    let parsed = off_thread(s, move || parse(&body))
        .await
        .map_err(|e| fail(s, e))?
        .map_err(|m| fail(s, wire::error::invalid_argument(&m)))?;
    let name = model(&parsed);
    let m = s.scenario.model_index(name).ok_or_else(|| fail(s, unknown(name)))?;
    Ok((key, m, parsed))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn unknown(name: &str) -> Value {
    wire::error::unknown_model(name, "v1beta", "generateContent")
}

async fn models(
    State(s): State<Arc<Shared>>,
    version: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    q: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Response {
    if let Err(e) = checked(&s, version, &headers, q) {
        return fail(&s, e);
    }
    let names: Vec<&str> = s.scenario.models.iter().map(|m| m.name.as_str()).collect();
    json_response(StatusCode::OK, &openai::models_list(&names))
}

async fn model(
    State(s): State<Arc<Shared>>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    q: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Response {
    let (version, id) = match path_of(path) {
        Ok(p) => p,
        Err(e) => return fail(&s, e),
    };
    if let Err(e) = checked(&s, Ok(Path(version)), &headers, q) {
        return fail(&s, e);
    }
    let name = openai::model_name(&id);
    match s.scenario.model_index(name) {
        Some(_) => json_response(StatusCode::OK, &openai::model_object(name)),
        None => fail(&s, unknown(name)),
    }
}

async fn chat(
    State(s): State<Arc<Shared>>,
    version: Result<Path<String>, PathRejection>,
    q: Result<Query<BTreeMap<String, String>>, QueryRejection>,
    req: Request,
) -> Response {
    let (key, model, req) = match accept(&s, version, q, req, openai::parse_chat, |r| &r.model).await {
        Ok(a) => a,
        Err(answer) => return answer,
    };
    let id = s.next_id.fetch_add(1, Ordering::Relaxed);
    let (output, finish) = draw_output(&s, id, req.max_tokens);
    let latency = match admit(&s, key, model, id, &[(req.input_tokens, output)]) {
        Ok(l) => l,
        Err(e) => return fail(&s, e),
    };
    // Written only for an admitted call (parse_chat checked that the format can be met).
    let text = match answer_text(&s, id, &req.format, output).await {
        Ok(t) => t,
        Err(e) => return fail(&s, e),
    };
    let (model_name, response_id, created) = (req.model.clone(), format!("chatcmpl-flux-{id:016x}"), unix_now());
    if !req.stream {
        wait(latency).await;
        return json_response(
            StatusCode::OK,
            &openai::completion(
                &text,
                req.input_tokens,
                output,
                finish,
                &model_name,
                &response_id,
                created,
            ),
        );
    }
    let (n, first, step) = schedule(&s, model, latency, output);
    let (prompt, usage, pieces) = (req.input_tokens, req.include_usage, pieces(&text, n));
    let frame = move |i: u64| {
        let last = i + 1 == n;
        let chunk = openai::chunk(
            &pieces[i as usize],
            i == 0,
            last.then_some(finish),
            (last && usage).then_some((prompt, output)),
            &model_name,
            &response_id,
            created,
        );
        format!("data: {chunk}\n\n")
    };
    timed_stream(
        n,
        first,
        step,
        frame,
        Some("data: [DONE]\n\n".into()),
        "text/event-stream",
    )
}

async fn embeddings(
    State(s): State<Arc<Shared>>,
    version: Result<Path<String>, PathRejection>,
    q: Result<Query<BTreeMap<String, String>>, QueryRejection>,
    req: Request,
) -> Response {
    let (key, model, req) = match accept(&s, version, q, req, openai::parse_embeddings, |r| &r.model).await {
        Ok(a) => a,
        Err(answer) => return answer,
    };
    let tokens = match embed(&s, key, model, &req.inputs).await {
        Ok(t) => t,
        Err(e) => return fail(&s, e),
    };
    let dims = req.dimensions.unwrap_or(openai::EMBED_DIMENSIONS);
    let vectors: Vec<Vec<f32>> = req
        .inputs
        .iter()
        .map(|t| openai::embedding(s.scenario.seed, t, dims))
        .collect();
    json_response(
        StatusCode::OK,
        &openai::embeddings_response(&vectors, &req.model, tokens, req.base64),
    )
}
