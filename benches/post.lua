-- wrk script for serve's throughput (README, "flux-sim serve"): POST a small generateContent body.
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = '{"contents":[{"parts":[{"text":"Translate: bonjour"}]}]}'
