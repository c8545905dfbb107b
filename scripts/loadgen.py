#!/usr/bin/env python3
"""Load generator for asyncapi-guard's webhook (and for a baseline server): TLS with
keep-alive, one AdmissionReview per request with a ~5 KB AsyncAPI document in a labelled
ConfigMap, every answer's uid and verdict checked.

  loadgen.py soak PORT SECONDS WORKDIR SERVER_PID   the soak of scripts/soak
  loadgen.py max PORT SECONDS CA_FILE unique|repeat check|nocheck
                                                    the highest rate, printed as req/s
                                                    (nocheck: a baseline server that allows all)
"""
import asyncio, json, os, random, ssl, subprocess, sys, time

counter = 0
repeat = False  # the same document every time (the memo's case), or a new one each time
check_verdicts = True
port = seconds = pid = 0
work = ""
context = None

def document(n, secure):
    servers = "".join(f"  production-{i}:\n    host: kafka-{i}.example.com:9093\n    protocol: kafka-secure\n"
                      + ("    security:\n      - $ref: '#/components/securitySchemes/scram'\n" if secure else "")
                      for i in range(4))
    channels = "".join(f"  orders{i}:\n    address: orders.{i}.events\n    messages:\n      event:\n        payload:\n"
                       f"          type: object\n          properties:\n            id: {{type: string}}\n            amount: {{type: number}}\n"
                       for i in range(12))
    return (f"asyncapi: 3.0.0\ninfo:\n  title: Orders\n  version: 1.0.0\n  x-request: {n}\nservers:\n{servers}channels:\n{channels}"
            "components:\n  securitySchemes:\n    scram:\n      type: scramSha512\n")

def review():
    global counter
    counter += 1
    secure = counter % 2 == 0
    if repeat:
        secure = True
    body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": f"soak-{counter}", "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
        "resource": {"group": "", "version": "v1", "resource": "configmaps"},
        "name": f"orders-{counter}", "namespace": "soak", "operation": "CREATE", "userInfo": {"username": "soak"},
        "object": {"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": f"orders-{counter}", "namespace": "soak", "labels": {"asyncapi-guard.io/document": "true"}},
                   "data": {"asyncapi.yaml": document(0 if repeat else counter, secure)}},
        "oldObject": None, "dryRun": False}}).encode()
    head = (f"POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode()
    return head + body, secure, f"soak-{counter}"

stats = {"requests": 0, "failures": 0, "wrong": 0, "latencies": []}

async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return status, await reader.readexactly(length)

async def worker(deadline, rate, record):
    reader = writer = None
    interval = 1.0 / rate if rate else 0
    next_at = time.perf_counter()
    while time.perf_counter() < deadline:
        if interval:
            next_at += interval
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        request, secure, uid = review()
        start = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")
            writer.write(request)
            await writer.drain()
            status, body = await asyncio.wait_for(read_response(reader), 10)
            elapsed = time.perf_counter() - start
            if record:
                stats["requests"] += 1
                stats["latencies"].append(elapsed)
                answer = json.loads(body)["response"]
                if status != 200:
                    stats["failures"] += 1
                elif answer["uid"] != uid or (check_verdicts and answer["allowed"] != secure):
                    stats["wrong"] += 1
        except Exception as e:  # a failed request, counted
            if record:
                stats["requests"] += 1
                stats["failures"] += 1
                if stats["failures"] <= 5:
                    print(f"failure: {type(e).__name__}: {e}", file=sys.stderr)
            if writer is not None:
                writer.close()
            reader = writer = None

async def slowloris(deadline, held):
    # Connections that trickle one header byte every two seconds: they must not starve the
    # others. The server drops them at its header timeout; they come back at once.
    async def slow():
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")
            w.write(b"POST /validate HTTP/1.1\r\nhost: local")
            return w
        except Exception:
            return None
    connections = [await slow() for _ in range(40)]
    held.append(sum(w is not None for w in connections))
    dropped = 0
    while time.perf_counter() < deadline:
        await asyncio.sleep(2)
        for i, w in enumerate(connections):
            if w is None or w.is_closing():
                dropped += w is not None
                connections[i] = await slow()
            else:
                w.write(b"h")
    held.append(dropped)

def swap(volume, name, files):
    # The kubelet's way: a new timestamped directory, then the ..data symlink swapped atomically.
    new = f"{volume}/..{name}"
    os.makedirs(new, exist_ok=True)
    for file, content in files.items():
        if isinstance(content, bytes):
            open(f"{new}/{file}", "wb").write(content)
        else:
            os.replace(content, f"{new}/{file}")
    os.symlink(f"..{name}", f"{volume}/..data_tmp")
    os.replace(f"{volume}/..data_tmp", f"{volume}/..data")

async def events(start):
    await asyncio.sleep(max(0, start + seconds * 0.2 - time.perf_counter()))
    d = f"{work}/next"
    os.makedirs(d, exist_ok=True)
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", f"{d}/tls.key", "-out", f"{d}/req.csr"], capture_output=True, check=True)
    open(f"{d}/san.ext", "w").write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    subprocess.run(["openssl", "x509", "-req", "-in", f"{d}/req.csr", "-CA", f"{work}/ca.crt", "-CAkey", f"{work}/ca.key", "-CAcreateserial", "-days", "2", "-extfile", f"{d}/san.ext", "-out", f"{d}/tls.crt"], capture_output=True, check=True)
    swap(f"{work}/certs", "2026_02", {"tls.crt": f"{d}/tls.crt", "tls.key": f"{d}/tls.key"})
    print(f"{time.perf_counter() - start:5.1f}s certificate swapped", file=sys.stderr)
    await asyncio.sleep(seconds * 0.2)
    swap(f"{work}/config", "2026_02", {"config.yaml": b"mode: [\n"})
    print(f"{time.perf_counter() - start:5.1f}s broken configuration written", file=sys.stderr)
    await asyncio.sleep(seconds * 0.2)
    swap(f"{work}/config", "2026_03", {"config.yaml": b"mode: enforce\nrules: {}\n"})
    print(f"{time.perf_counter() - start:5.1f}s good configuration written", file=sys.stderr)

async def soak():
    connections = 16
    # The maximum: as fast as the connections go, for 5 s.
    before = counter
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(t0 + 5, 0, False) for _ in range(connections)))
    maximum = (counter - before) / (time.perf_counter() - t0)
    target = 0.8 * maximum
    print(f"measured maximum {maximum:.0f} req/s; soaking at {target:.0f} req/s for {seconds} s", file=sys.stderr)
    start = time.perf_counter()
    deadline = start + seconds
    held = []
    await asyncio.gather(events(start), slowloris(deadline, held),
                         *(worker(deadline, target / connections, True) for _ in range(connections)))
    latencies = sorted(stats["latencies"])
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else float("nan")
    p50 = latencies[len(latencies) // 2] * 1000 if latencies else float("nan")
    peak = next((l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("VmHWM")), "?")
    print(f"requests {stats['requests']} ({stats['requests'] / seconds:.0f} req/s), failures {stats['failures']}, "
          f"wrong verdicts {stats['wrong']}, p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
          f"slowloris connections held {held[0] if held else 0} (dropped by the server and reopened {held[1] if len(held) > 1 else 0} times), "
          f"peak RSS {int(peak) / 1024:.1f} MiB")
    sys.exit(1 if stats["failures"] or stats["wrong"] or not stats["requests"] else 0)



async def highest_rate():
    before = counter
    start = time.perf_counter()
    await asyncio.gather(*(worker(start + seconds, 0, True) for _ in range(16)))
    rate = (counter - before) / (time.perf_counter() - start)
    if stats["failures"] or stats["wrong"]:
        print(f"failures {stats['failures']}, wrong verdicts {stats['wrong']}", file=sys.stderr)
        sys.exit(1)
    print(f"{rate:.0f}")


if __name__ == "__main__":
    mode = sys.argv[1]
    port, seconds = int(sys.argv[2]), int(sys.argv[3])
    if mode == "soak":
        work, pid = sys.argv[4], int(sys.argv[5])
        context = ssl.create_default_context(cafile=f"{work}/ca.crt")
        asyncio.run(soak())
    else:
        context = ssl.create_default_context(cafile=sys.argv[4])
        repeat = sys.argv[5] == "repeat"
        check_verdicts = sys.argv[6] == "check"
        asyncio.run(highest_rate())
