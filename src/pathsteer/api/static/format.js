// Pure helpers of the dashboard: numbers, times and one line of text per event. No DOM.

export const dash = "–";

export function ms(v) {
  if (v == null || !Number.isFinite(v)) return dash;
  if (v < 10) return `${v.toFixed(2)} ms`;
  if (v < 100) return `${v.toFixed(1)} ms`;
  return `${Math.round(v)} ms`;
}

export function pct(v) {
  if (v == null || !Number.isFinite(v)) return dash;
  if (v === 0) return "0 %";
  if (v < 0.1) return "<0.1 %";
  if (v < 10) return `${v.toFixed(1)} %`;
  return `${Math.round(v)} %`;
}

export function bps(v) {
  if (v == null || !Number.isFinite(v)) return dash;
  const units = [[1e9, "Gbit/s"], [1e6, "Mbit/s"], [1e3, "kbit/s"]];
  for (const [f, u] of units) if (v >= f) return `${(v / f).toFixed(v >= 10 * f ? 0 : 1)} ${u}`;
  return `${Math.round(v)} bit/s`;
}

// A duration in seconds, short: 4 s, 3 min, 2 h 5 min, 6 d.
export function duration(s) {
  if (s == null || !Number.isFinite(s)) return dash;
  s = Math.max(0, s);
  if (s < 60) return `${Math.floor(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) {
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    return m ? `${h} h ${m} min` : `${h} h`;
  }
  return `${Math.floor(s / 86400)} d`;
}

export function clock(t) {
  if (t == null) return dash;
  const d = new Date(t * 1000);
  return d.toLocaleTimeString([], { hour12: false, hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function isoTime(t) {
  return t == null ? "" : new Date(t * 1000).toISOString();
}

// "p1" or "p1:2,p2:1" (the daemon's hops text) as next hops with shares.
export function parseHops(text) {
  if (!text || text === "-") return [];
  const hops = text.split(",").map((part) => {
    const [path, w] = part.split(":");
    return { path, weight: w === undefined ? 1 : Number(w) || 0 };
  });
  const total = hops.reduce((a, h) => a + h.weight, 0) || 1;
  return hops.map((h) => ({ ...h, share: h.weight / total }));
}

const SKIP = new Set(["seq", "at", "name"]);

function rest(e, used) {
  return Object.entries(e)
    .filter(([k, v]) => !SKIP.has(k) && !used.includes(k) && v !== null && v !== "")
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
}

// One event as {text, tone}: tone is bad, warn, good, change or "" (the timeline's colour).
export function describe(e) {
  const from = e.from ?? "?";
  const to = e.to ?? "?";
  switch (e.name) {
    case "steer.change": {
      const kind = e.kind ? ` (${e.kind})` : "";
      const why = e.reason ? ` — ${e.reason}` : "";
      return { text: `${e.prefix}: ${from} → ${to}${kind}${why}`, tone: "change" };
    }
    case "path.state": {
      const tone = to === "down" ? "bad" : to === "up" ? "good" : "warn";
      return { text: `${e.path}: ${from} → ${to}`, tone };
    }
    case "guard.block": {
      const ttl = e.ttl && e.ttl !== "none" ? `, for ${e.ttl}` : "";
      const why = e.reason ? ` — ${e.reason}` : "";
      return { text: `blocked ${e.cidr} (${e.origin ?? "?"}${ttl})${why}`, tone: "warn" };
    }
    case "guard.unblock":
      return { text: `unblocked ${e.cidr}`, tone: "good" };
    case "guard.expire":
      return { text: `block on ${e.cidr} expired`, tone: "" };
    case "steer.drain": {
      const until = e.until ? `, until ${clock(e.until)}` : "";
      const why = e.reason ? ` — ${e.reason}` : "";
      return { text: `${e.path} drained${until}${why}`, tone: "warn" };
    }
    case "steer.undrain":
      return { text: `${e.path} back in service`, tone: "good" };
    default:
      return { text: rest(e, []), tone: /fail|error|refused/.test(e.name) ? "bad" : "" };
  }
}

// The text a route row is found by (the filter box matches a substring of it).
export function routeSearchText(r) {
  const hops = (r.nexthops || []).map((h) => h.path).join(" ");
  return `${r.prefix} ${r.via ?? ""} ${hops} ${r.policy ?? ""} ${r.kind ?? ""} ${r.reason ?? ""} ${r.pending ?? ""}`.toLowerCase();
}
