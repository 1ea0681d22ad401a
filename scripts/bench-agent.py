#!/usr/bin/env python3
"""Agent figures against a real `suanwang up` (its in-process `local` agent), printed as JSON:

- submit_to_completed_ms: a job running `true` on site `local`, from POST /v1/jobs until the
  job reads `completed` (p50/p99/min/max over --jobs jobs, one at a time);
- agent_requests_per_s: HTTP requests the server answers per second while the agent is idle
  and while one job (`sleep 5`) runs (from /metrics), i.e. the agent's polling cost.

Usage: scripts/bench-agent.py [--bin target/release/suanwang] [--jobs 20] [--port 7179]
Heavy-ish and timing-based: run outside CI (`cargo build --release` first).
"""
import argparse, json, shutil, statistics, subprocess, tempfile, time, urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--bin", default="target/release/suanwang")
ap.add_argument("--jobs", type=int, default=20)
ap.add_argument("--port", type=int, default=7179)
args = ap.parse_args()

data = tempfile.mkdtemp(prefix="suanwang-bench-agent-")
url = f"http://127.0.0.1:{args.port}"
server = subprocess.Popen([args.bin, "up", "--data", data, "--credit-limit-fen", "unlimited", "--listen", f"127.0.0.1:{args.port}"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def call(method, path, token, body=None):
    req = urllib.request.Request(url + path, method=method, data=json.dumps(body).encode() if body else None,
                                 headers={"authorization": "Bearer " + token, "content-type": "application/json"})
    return json.load(urllib.request.urlopen(req))


def requests_served():
    text = urllib.request.urlopen(url + "/metrics").read().decode()
    line = next(l for l in text.splitlines() if l.startswith("suanwang_http_request_duration_seconds_count"))
    return int(float(line.split()[-1]))


def rate(seconds=3.0):
    c0, t0 = requests_served(), time.monotonic()
    time.sleep(seconds)
    return (requests_served() - c0 - 1) / (time.monotonic() - t0)  # minus our own /metrics call


def job(name, command, argv):
    return {"name": name, "tenant": "acme-ai", "kind": "inference", "origin": "beijing", "allowed_sites": ["local"],
            "resources": {"family": "general", "count": 1, "memory_gib": 1}, "work": {"run_time_s": 5},
            "run": {"command": command, "args": argv}}


try:
    for _ in range(600):
        try:
            urllib.request.urlopen(url + "/healthz")
            break
        except OSError:
            time.sleep(0.05)
    creds = json.load(open(f"{data}/credentials.json"))
    while not any(s["id"] == "local" for s in call("GET", "/v1/sites", creds["operator"])["sites"]):
        time.sleep(0.05)
    idle = rate()
    running = call("POST", "/v1/jobs", creds["tenant"], job("busy", "sleep", ["5"]))
    time.sleep(1)
    busy = rate()
    while call("GET", f"/v1/jobs/{running['id']}", creds["operator"])["state"] not in ("completed", "failed"):
        time.sleep(0.1)
    latencies = []
    for i in range(args.jobs):
        t = time.monotonic()
        j = call("POST", "/v1/jobs", creds["tenant"], job(f"lat{i}", "true", []))
        while (v := call("GET", f"/v1/jobs/{j['id']}", creds["operator"]))["state"] not in ("completed", "failed"):
            time.sleep(0.002)
        assert v["state"] == "completed", v
        latencies.append((time.monotonic() - t) * 1000)
finally:
    server.terminate()
    server.wait()
    shutil.rmtree(data, ignore_errors=True)

latencies.sort()
print(json.dumps({
    "jobs": args.jobs,
    "submit_to_completed_ms": {"p50": round(statistics.median(latencies), 1),
                               "p99": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1),
                               "min": round(latencies[0], 1), "max": round(latencies[-1], 1)},
    "agent_requests_per_s": {"idle": round(idle, 1), "one_job_running": round(busy, 1)},
}))
