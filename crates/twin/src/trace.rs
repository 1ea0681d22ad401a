//! Streaming readers for real workload traces. Each reader turns lines into `TraceRecord`s
//! (submit time, duration, CPUs, GPUs, memory) or `BadLine`s naming file, line and reason.
//! Lines are read one at a time with a length cap, so huge or truncated files never exhaust
//! memory.

use std::io::BufRead;

use serde::Serialize;

/// Longest line accepted; longer lines are reported and skipped.
pub const MAX_LINE: usize = 64 * 1024;

/// One job of a trace, in the trace's own time (seconds from its start).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TraceRecord {
    /// 1-based line number in the file.
    pub line: u64,
    pub submit_s: f64,
    pub duration_s: f64,
    /// CPU cores requested (0 if unknown).
    pub cpus: f64,
    /// GPUs requested (fractions allowed: GPU sharing).
    pub gpus: f64,
    /// Memory requested, MiB (0 if unknown).
    pub mem_mib: f64,
    /// LLM requests: (context, generated) tokens.
    pub tokens: Option<(u32, u32)>,
}

/// A line that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadLine {
    pub file: String,
    pub line: u64,
    pub reason: String,
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

/// Column mapping of the generic CSV reader.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CsvMap {
    pub submit: String,
    /// Either a duration column or an end-time column.
    pub duration: Option<String>,
    pub end: Option<String>,
    pub cpus: Option<String>,
    pub gpus: Option<String>,
    pub mem: Option<String>,
    /// Seconds per time unit of the file (1, 1e-3, 1e-6).
    pub time_scale: f64,
    /// MiB per memory unit of the file (1 or 1024).
    pub mem_scale: f64,
}

impl CsvMap {
    /// `submit=COL,duration=COL|end=COL,cpus=COL,gpus=COL,mem=COL` and
    /// `time=s|ms|us,mem=MiB|GiB`. COL is a header name or a 1-based column number.
    pub fn parse(map: &str, units: Option<&str>) -> Result<CsvMap, String> {
        let mut m = CsvMap {
            submit: String::new(),
            duration: None,
            end: None,
            cpus: None,
            gpus: None,
            mem: None,
            time_scale: 1.0,
            mem_scale: 1.0,
        };
        for part in map.split(',').filter(|p| !p.trim().is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| format!("--map: {part:?} is not KEY=COLUMN"))?;
            let v = v.trim().to_string();
            match k.trim() {
                "submit" => m.submit = v,
                "duration" => m.duration = Some(v),
                "end" => m.end = Some(v),
                "cpus" => m.cpus = Some(v),
                "gpus" => m.gpus = Some(v),
                "mem" => m.mem = Some(v),
                other => {
                    return Err(format!("--map: unknown key {other:?}; use submit, duration, end, cpus, gpus, mem"));
                }
            }
        }
        if m.submit.is_empty() {
            return Err("--map: submit=COLUMN is required".into());
        }
        if m.duration.is_some() == m.end.is_some() {
            return Err("--map: give exactly one of duration=COLUMN or end=COLUMN".into());
        }
        for part in units.unwrap_or("").split(',').filter(|p| !p.trim().is_empty()) {
            match part.trim() {
                "time=s" => m.time_scale = 1.0,
                "time=ms" => m.time_scale = 1e-3,
                "time=us" => m.time_scale = 1e-6,
                "mem=MiB" => m.mem_scale = 1.0,
                "mem=GiB" => m.mem_scale = 1024.0,
                other => return Err(format!("--units: {other:?}; use time=s|ms|us and mem=MiB|GiB")),
            }
        }
        Ok(m)
    }
}

/// The trace formats Suanwang reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum TraceKind {
    /// Alibaba cluster-trace-v2017 `batch_task.csv`.
    Alibaba2017,
    /// Alibaba cluster-trace-gpu-v2023 (`OpenB`) pod list.
    OpenB,
    /// Microsoft Philly derived job table (`philly_trace.csv`).
    Philly,
    /// Azure LLM inference trace 2023.
    AzureLlm,
    /// Standard Workload Format (Parallel Workloads Archive).
    Swf,
    /// Any CSV with a column mapping.
    Csv(CsvMap),
}

impl TraceKind {
    pub fn name(&self) -> &'static str {
        match self {
            TraceKind::Alibaba2017 => "alibaba2017",
            TraceKind::OpenB => "openb",
            TraceKind::Philly => "philly",
            TraceKind::AzureLlm => "azure-llm",
            TraceKind::Swf => "swf",
            TraceKind::Csv(_) => "csv",
        }
    }

    /// Parses `KIND:PATH`; `csv` needs `map` (and optionally `units`).
    pub fn parse(spec: &str, map: Option<&str>, units: Option<&str>) -> Result<(TraceKind, String), String> {
        let (kind, path) = spec.split_once(':').ok_or_else(|| format!("--trace {spec:?}: expected KIND:PATH"))?;
        let kind = match kind {
            "alibaba2017" => TraceKind::Alibaba2017,
            "openb" => TraceKind::OpenB,
            "philly" => TraceKind::Philly,
            "azure-llm" => TraceKind::AzureLlm,
            "swf" => TraceKind::Swf,
            "csv" => TraceKind::Csv(CsvMap::parse(
                map.ok_or("--trace csv:PATH needs --map submit=COL,duration=COL|end=COL,…")?,
                units,
            )?),
            other => {
                return Err(format!(
                    "--trace: unknown kind {other:?}; one of alibaba2017, openb, philly, azure-llm, swf, csv"
                ));
            }
        };
        if path.is_empty() {
            return Err("--trace: empty path".into());
        }
        Ok((kind, path.to_string()))
    }

    /// True for traces of HPC machines (their CPUs are nodes of super compute).
    pub fn is_hpc(&self) -> bool {
        matches!(self, TraceKind::Swf)
    }
}

/// What a reader yields per line.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Record(TraceRecord),
    /// A well-formed line that describes no runnable job (a failed task, a pending pod, a
    /// zero duration): counted, not an error.
    Skipped {
        line: u64,
        reason: &'static str,
    },
    Bad(BadLine),
}

/// A streaming reader over any `BufRead`.
#[derive(Debug)]
pub struct Reader<R> {
    input: R,
    kind: TraceKind,
    file: String,
    line: u64,
    buf: Vec<u8>,
    /// Column indices of the CSV mapping once the header is read.
    columns: Option<CsvColumns>,
    azure_t0: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
struct CsvColumns {
    submit: usize,
    duration: Option<usize>,
    end: Option<usize>,
    cpus: Option<usize>,
    gpus: Option<usize>,
    mem: Option<usize>,
}

impl<R: BufRead> Reader<R> {
    pub fn new(input: R, kind: TraceKind, file: impl Into<String>) -> Reader<R> {
        Reader { input, kind, file: file.into(), line: 0, buf: Vec::with_capacity(256), columns: None, azure_t0: None }
    }

    fn bad(&self, reason: impl Into<String>) -> Item {
        Item::Bad(BadLine { file: self.file.clone(), line: self.line, reason: reason.into() })
    }

    /// Reads one line into `buf` (without the newline), at most `MAX_LINE` bytes; `None` at
    /// the end. A longer line is consumed to its end and reported.
    fn read_line(&mut self) -> Option<Result<(), String>> {
        self.buf.clear();
        let mut too_long = false;
        loop {
            let chunk = match self.input.fill_buf() {
                Ok(c) => c,
                Err(e) => return Some(Err(format!("read error: {e}"))),
            };
            if chunk.is_empty() {
                if self.buf.is_empty() && !too_long {
                    return None;
                }
                break;
            }
            let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            if !too_long {
                let room = MAX_LINE.saturating_sub(self.buf.len());
                if take > room + usize::from(done) {
                    too_long = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(&chunk[..take]);
                }
            }
            self.input.consume(take);
            if done {
                break;
            }
        }
        self.line += 1;
        if too_long {
            return Some(Err(format!("line longer than {MAX_LINE} bytes")));
        }
        while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
            self.buf.pop();
        }
        Some(Ok(()))
    }
}

fn num(field: Option<&str>, name: &str) -> Result<f64, String> {
    let f = field.ok_or_else(|| format!("missing column {name}"))?.trim();
    let v: f64 = f.parse().map_err(|_| format!("{name}: {f:?} is not a number"))?;
    if v.is_finite() { Ok(v) } else { Err(format!("{name}: {f:?} is not finite")) }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        loop {
            if let Err(reason) = self.read_line()? {
                return Some(self.bad(reason));
            }
            let Ok(text) = std::str::from_utf8(&self.buf) else {
                return Some(self.bad("not UTF-8"));
            };
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            let line = self.line;
            let parsed = match &self.kind {
                TraceKind::Alibaba2017 => {
                    if text.starts_with("task_create_time") {
                        continue;
                    }
                    parse_alibaba(text, line)
                }
                TraceKind::OpenB => {
                    if text.starts_with("name,") {
                        continue;
                    }
                    parse_openb(text, line)
                }
                TraceKind::Philly => {
                    if text.starts_with('#') {
                        continue;
                    }
                    parse_philly(text, line)
                }
                TraceKind::AzureLlm => {
                    if text.starts_with("TIMESTAMP") {
                        continue;
                    }
                    let r = parse_azure(text, line);
                    match r {
                        Ok(Item::Record(mut rec)) => {
                            let t0 = *self.azure_t0.get_or_insert(rec.submit_s);
                            rec.submit_s -= t0;
                            Ok(Item::Record(rec))
                        }
                        other => other,
                    }
                }
                TraceKind::Swf => {
                    if text.starts_with(';') {
                        continue;
                    }
                    parse_swf(text, line)
                }
                TraceKind::Csv(map) => {
                    if self.columns.is_none() {
                        match csv_columns(map, text) {
                            Ok(c) => {
                                self.columns = Some(c);
                                continue;
                            }
                            Err(e) => return Some(self.bad(e)),
                        }
                    }
                    let (Some(cols), TraceKind::Csv(map)) = (self.columns, &self.kind) else { continue };
                    parse_csv(text, line, cols, map)
                }
            };
            return Some(match parsed {
                Ok(item) => item,
                Err(reason) => self.bad(reason),
            });
        }
    }
}

fn parse_alibaba(text: &str, line: u64) -> Result<Item, String> {
    let f: Vec<&str> = text.split(',').collect();
    if f.len() != 8 {
        return Err(format!("expected 8 columns, found {}", f.len()));
    }
    let create = num(f.first().copied(), "task_create_time")?;
    let end = num(f.get(1).copied(), "task_end_time")?;
    let instances = num(f.get(4).copied(), "number_of_instances")?;
    if f[5].trim() != "Terminated" {
        return Ok(Item::Skipped { line, reason: "task not terminated" });
    }
    if f[6].trim().is_empty() {
        return Ok(Item::Skipped { line, reason: "no CPU request" });
    }
    let plan_cpu = num(f.get(6).copied(), "plan_cpu")?;
    if end <= create {
        return Ok(Item::Skipped { line, reason: "no positive duration" });
    }
    if instances < 1.0 || plan_cpu <= 0.0 {
        return Err(format!("instances {instances} or plan_cpu {plan_cpu} not positive"));
    }
    // plan_mem is normalised to the largest machine (unknown size): not used as MiB
    Ok(Item::Record(TraceRecord {
        line,
        submit_s: create,
        duration_s: end - create,
        cpus: instances * plan_cpu / 100.0,
        gpus: 0.0,
        mem_mib: 0.0,
        tokens: None,
    }))
}

fn parse_openb(text: &str, line: u64) -> Result<Item, String> {
    let f: Vec<&str> = text.split(',').collect();
    if f.len() != 11 {
        return Err(format!("expected 11 columns, found {}", f.len()));
    }
    let cpu_milli = num(Some(f[1]), "cpu_milli")?;
    let mem = num(Some(f[2]), "memory_mib")?;
    let num_gpu = num(Some(f[3]), "num_gpu")?;
    let gpu_milli = num(Some(f[4]), "gpu_milli")?;
    let creation = num(Some(f[8]), "creation_time")?;
    if f[9].trim().is_empty() || f[10].trim().is_empty() {
        return Ok(Item::Skipped { line, reason: "pod never ran to deletion" });
    }
    let deletion = num(Some(f[9]), "deletion_time")?;
    let scheduled = num(Some(f[10]), "scheduled_time")?;
    if deletion <= scheduled {
        return Ok(Item::Skipped { line, reason: "no positive duration" });
    }
    let gpus = if num_gpu > 0.0 {
        num_gpu * (gpu_milli / 1000.0).clamp(0.0, 1.0).max(if gpu_milli > 0.0 { 0.0 } else { 1.0 })
    } else {
        0.0
    };
    Ok(Item::Record(TraceRecord {
        line,
        submit_s: creation,
        duration_s: deletion - scheduled,
        cpus: cpu_milli / 1000.0,
        gpus,
        mem_mib: mem,
        tokens: None,
    }))
}

fn parse_philly(text: &str, line: u64) -> Result<Item, String> {
    let f: Vec<&str> = text.split(',').collect();
    if f.len() != 6 {
        return Err(format!("expected 6 columns, found {}", f.len()));
    }
    let arrival = num(Some(f[1]), "arrival time")?;
    let size = num(Some(f[4]), "size")?;
    let duration = num(Some(f[5]), "duration")?;
    if duration <= 0.0 {
        return Ok(Item::Skipped { line, reason: "zero duration" });
    }
    if size < 1.0 {
        return Err(format!("size {size} is not a GPU count"));
    }
    Ok(Item::Record(TraceRecord {
        line,
        submit_s: arrival,
        duration_s: duration,
        cpus: 0.0,
        gpus: size,
        mem_mib: 0.0,
        tokens: None,
    }))
}

/// Service-time model for LLM requests (modelled): 0.05 s overhead, prefill at 10,000 tokens/s,
/// decode at 25 ms per generated token, on one accelerator.
pub fn llm_service_s(context: u32, generated: u32) -> f64 {
    0.05 + f64::from(context) / 10_000.0 + f64::from(generated) * 0.025
}

fn parse_azure(text: &str, line: u64) -> Result<Item, String> {
    let f: Vec<&str> = text.split(',').collect();
    if f.len() != 3 {
        return Err(format!("expected 3 columns, found {}", f.len()));
    }
    let ts = f[0].trim();
    // "2023-11-16 18:17:03.9799600": civil time, taken as UTC (only differences matter)
    let at = suanwang_core::Ts::parse(&format!("{}Z", ts.replacen(' ', "T", 1)))
        .map_err(|e| format!("TIMESTAMP {ts:?}: {e}"))?;
    let secs = at.0 as f64 / 1000.0;
    let context: u32 = f[1].trim().parse().map_err(|_| format!("ContextTokens {:?} is not a count", f[1]))?;
    let generated: u32 = f[2].trim().parse().map_err(|_| format!("GeneratedTokens {:?} is not a count", f[2]))?;
    Ok(Item::Record(TraceRecord {
        line,
        submit_s: secs,
        duration_s: llm_service_s(context, generated),
        cpus: 0.0,
        gpus: 1.0,
        mem_mib: 0.0,
        tokens: Some((context, generated)),
    }))
}

/// SWF: 18 whitespace-separated fields, -1 = unknown. Submit (2), run time (4), allocated
/// processors (5), used memory KB per processor (7), requested processors (8), requested time
/// (9), requested memory KB per processor (10), status (11: 0 failed, 5 cancelled).
fn parse_swf(text: &str, line: u64) -> Result<Item, String> {
    let f: Vec<&str> = text.split_whitespace().collect();
    if f.len() != 18 {
        return Err(format!("expected 18 fields, found {}", f.len()));
    }
    let v = |i: usize, name: &str| num(Some(f[i - 1]), name);
    let known = |x: f64| (x >= 0.0).then_some(x);
    let submit = v(2, "submit time")?;
    let run = known(v(4, "run time")?).or(known(v(9, "requested time")?));
    let procs = known(v(5, "allocated processors")?).or(known(v(8, "requested processors")?));
    let mem_kb = known(v(7, "used memory")?).or(known(v(10, "requested memory")?));
    let status = v(11, "status")?;
    if submit < 0.0 {
        return Err("submit time unknown".into());
    }
    let (Some(run), Some(procs)) = (run, procs) else {
        return Ok(Item::Skipped { line, reason: "run time or processors unknown" });
    };
    if (status - 5.0).abs() < f64::EPSILON {
        return Ok(Item::Skipped { line, reason: "cancelled before running" });
    }
    if run <= 0.0 || procs <= 0.0 {
        return Ok(Item::Skipped { line, reason: "no positive run time or processors" });
    }
    Ok(Item::Record(TraceRecord {
        line,
        submit_s: submit,
        duration_s: run,
        cpus: procs,
        gpus: 0.0,
        mem_mib: mem_kb.map_or(0.0, |kb| kb * procs / 1024.0),
        tokens: None,
    }))
}

fn csv_columns(map: &CsvMap, header: &str) -> Result<CsvColumns, String> {
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    let find = |col: &str| -> Result<usize, String> {
        if let Ok(n) = col.parse::<usize>() {
            return if n >= 1 && n <= names.len() {
                Ok(n - 1)
            } else {
                Err(format!("--map: column {n} is out of 1..={}", names.len()))
            };
        }
        names
            .iter()
            .position(|h| *h == col)
            .ok_or_else(|| format!("--map: no column {col:?} in the header ({})", names.join(", ")))
    };
    let opt = |c: &Option<String>| c.as_deref().map(find).transpose();
    Ok(CsvColumns {
        submit: find(&map.submit)?,
        duration: opt(&map.duration)?,
        end: opt(&map.end)?,
        cpus: opt(&map.cpus)?,
        gpus: opt(&map.gpus)?,
        mem: opt(&map.mem)?,
    })
}

fn parse_csv(text: &str, line: u64, c: CsvColumns, map: &CsvMap) -> Result<Item, String> {
    let f: Vec<&str> = text.split(',').map(str::trim).collect();
    let get = |i: usize| f.get(i).copied().filter(|s| !s.is_empty());
    let value = |i: Option<usize>, name: &str| -> Result<Option<f64>, String> {
        match i {
            None => Ok(None),
            Some(i) => match get(i) {
                None => Ok(None),
                Some(s) => num(Some(s), name).map(Some),
            },
        }
    };
    let Some(submit) = value(Some(c.submit), "submit")? else {
        return Ok(Item::Skipped { line, reason: "a mapped value is missing" });
    };
    let submit = submit * map.time_scale;
    let duration = match (c.duration, c.end) {
        (Some(_), _) => value(c.duration, "duration")?.map(|d| d * map.time_scale),
        (None, Some(_)) => value(c.end, "end")?.map(|e| e * map.time_scale - submit),
        (None, None) => None,
    };
    let cpus = value(c.cpus, "cpus")?;
    let gpus = value(c.gpus, "gpus")?;
    let mem = value(c.mem, "mem")?;
    let missing = duration.is_none()
        || (c.cpus.is_some() && cpus.is_none())
        || (c.gpus.is_some() && gpus.is_none())
        || (c.mem.is_some() && mem.is_none());
    if missing {
        return Ok(Item::Skipped { line, reason: "a mapped value is missing" });
    }
    let duration = duration.unwrap_or(0.0);
    if duration <= 0.0 {
        return Ok(Item::Skipped { line, reason: "no positive duration" });
    }
    let (cpus, gpus) = (cpus.unwrap_or(0.0), gpus.unwrap_or(0.0));
    if cpus < 0.0 || gpus < 0.0 {
        return Err("negative cpus or gpus".into());
    }
    Ok(Item::Record(TraceRecord {
        line,
        submit_s: submit,
        duration_s: duration,
        cpus,
        gpus,
        mem_mib: mem.unwrap_or(0.0) * map.mem_scale,
        tokens: None,
    }))
}
