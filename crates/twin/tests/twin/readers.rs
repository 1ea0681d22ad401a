use suanwang_twin::trace::{CsvMap, Item, Reader, TraceKind, llm_service_s};

fn read(kind: TraceKind, text: &[u8]) -> Vec<Item> {
    Reader::new(text, kind, "sample").collect()
}

fn records(items: &[Item]) -> Vec<suanwang_twin::TraceRecord> {
    items.iter().filter_map(|i| if let Item::Record(r) = i { Some(*r) } else { None }).collect()
}

fn bad_lines(items: &[Item]) -> Vec<(u64, String)> {
    items.iter().filter_map(|i| if let Item::Bad(b) = i { Some((b.line, b.reason.clone())) } else { None }).collect()
}

#[test]
fn alibaba_2017_terminated_tasks_become_records() {
    let text = b"task_create_time, task_end_time, job_id, task_id,number_of_instances, status, number_of_cpus_requested_per_instance_in_the_task,normalized_memory_requested_per_instance_in_the_task\n\
6459,6524,3,4,15740,Terminated,50,0.007956928\n\
100,50,3,5,1,Terminated,50,0.1\n\
200,300,3,6,2,Waiting,,0.1\n\
200,300,3,6,2,Terminated,abc,0.1\n\
1,2,3\n";
    let items = read(TraceKind::Alibaba2017, text);
    let r = records(&items);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].line, r[0].submit_s, r[0].duration_s), (2, 6459.0, 65.0));
    assert!((r[0].cpus - 7870.0).abs() < 1e-9, "15740 instances × 0.5 core");
    let bad = bad_lines(&items);
    assert_eq!(bad.len(), 2);
    assert_eq!(bad[0].0, 5);
    assert!(bad[0].1.contains("plan_cpu"), "{}", bad[0].1);
    assert!(bad[1].1.contains("expected 8 columns"));
    assert_eq!(items.iter().filter(|i| matches!(i, Item::Skipped { .. })).count(), 2);
}

#[test]
fn openb_pods_philly_jobs_and_llm_requests() {
    let openb = b"name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n\
openb-pod-0000,12000,16384,1,1000,,LS,Running,0,12537496,0\n\
openb-pod-0001,6000,12288,1,460,,LS,Running,427061,12902960,427061\n\
openb-pod-0002,4000,1024,0,0,,BE,Pending,500,,\n";
    let items = read(TraceKind::OpenB, openb);
    let r = records(&items);
    assert_eq!(r.len(), 2);
    assert!((r[1].gpus - 0.46).abs() < 1e-9 && (r[1].cpus - 6.0).abs() < 1e-9 && (r[1].mem_mib - 12288.0).abs() < 1e-9);
    assert!(matches!(items[2], Item::Skipped { .. }));

    let philly = b"#job id,arrival time (sec),topology,shape,size,duration (sec)\n0,0.0,CLOS,1,1,3613033.0\n1,266563.0,CLOS,8,8,0.0\n2,oops,CLOS,1,1,5\n";
    let items = read(TraceKind::Philly, philly);
    assert_eq!(records(&items).len(), 1);
    assert_eq!(bad_lines(&items), vec![(4, "arrival time: \"oops\" is not a number".to_string())]);

    let azure = b"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,4808,10\n2023-11-16 18:17:04.0319600,3180,8\n";
    let r = records(&read(TraceKind::AzureLlm, azure));
    assert_eq!(r.len(), 2);
    assert!(r[0].submit_s.abs() < 1e-9 && (r[1].submit_s - 0.052).abs() < 1e-6);
    assert!((r[0].duration_s - llm_service_s(4808, 10)).abs() < 1e-9);
}

#[test]
fn swf_reads_all_18_fields_with_unknowns_and_comments() {
    let swf = b"; Version: 2.2\n; Computer: Intel iPSC/860\n\
    1        0     -1   1451  128     -1    -1   -1     -1    -1 -1   1   1  -1 -1 -1 -1 -1\n\
    2     1460     -1     -1   -1     -1   512   64   3600    -1  1   1   1  -1 -1 -1 -1 -1\n\
    3     1500     -1     -1   -1     -1    -1   -1     -1    -1  1   1   1  -1 -1 -1 -1 -1\n\
    4     1600     -1     60    2     -1    -1   -1     -1    -1  5   1   1  -1 -1 -1 -1 -1\n\
    5     1700     -1     60    2\n";
    let items = read(TraceKind::Swf, swf);
    let r = records(&items);
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].submit_s, r[0].duration_s, r[0].cpus), (0.0, 1451.0, 128.0));
    // run time unknown → requested time; processors unknown → requested
    assert_eq!((r[1].duration_s, r[1].cpus), (3600.0, 64.0));
    assert!((r[1].mem_mib - 512.0 * 64.0 / 1024.0).abs() < 1e-9);
    assert_eq!(items.iter().filter(|i| matches!(i, Item::Skipped { .. })).count(), 2);
    assert_eq!(bad_lines(&items), vec![(7, "expected 18 fields, found 5".to_string())]);
}

#[test]
fn generic_csv_with_a_mapping() {
    let map = CsvMap::parse("submit=start,end=stop,cpus=3,gpus=gpu", Some("time=ms")).expect("valid");
    let text = b"start,stop,cores,gpu\n1000,61000,4,0\n2000,,4,1\n3000,4000,x,0\n";
    let items = read(TraceKind::Csv(map), text);
    let r = records(&items);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].submit_s, r[0].duration_s, r[0].cpus), (1.0, 60.0, 4.0));
    assert!(matches!(items[1], Item::Skipped { reason: "a mapped value is missing", .. }));
    assert_eq!(bad_lines(&items).len(), 1);
    for (m, u) in [
        ("duration=a", None),
        ("submit=a", None),
        ("submit=a,duration=b,end=c", None),
        ("submit=a,duration=b,colour=c", None),
        ("submit=a,duration=b", Some("time=hours")),
    ] {
        assert!(CsvMap::parse(m, u).is_err(), "{m} {u:?}");
    }
    // a column the header does not have is reported on line 1
    let map = CsvMap::parse("submit=nope,duration=stop", None).expect("valid");
    let items = read(TraceKind::Csv(map), b"start,stop\n1,2\n");
    assert!(bad_lines(&items)[0].1.contains("no column \"nope\""));
}

#[test]
fn non_utf8_and_overlong_lines_are_reported_not_fatal() {
    let mut text = b"#job id,arrival time (sec),topology,shape,size,duration (sec)\n0,0.0,CLOS,1,1,10\n".to_vec();
    text.extend_from_slice(b"1,\xff\xfe,CLOS,1,1,10\n");
    text.extend(std::iter::repeat_n(b'9', 200_000));
    text.extend_from_slice(b"\n2,5.0,CLOS,1,1,10\n3,6.0,CLOS,1,1"); // truncated last line
    let items = read(TraceKind::Philly, &text);
    assert_eq!(records(&items).len(), 2);
    let bad = bad_lines(&items);
    assert_eq!(bad.len(), 3, "{bad:?}");
    assert_eq!((bad[0].0, bad[0].1.as_str()), (3, "not UTF-8"));
    assert!(bad[1].1.contains("longer than"));
    assert!(bad[2].1.contains("expected 6 columns"));
    assert!(TraceKind::parse("tape:/x", None, None).is_err());
    assert!(TraceKind::parse("csv:/x", None, None).is_err());
    assert!(TraceKind::parse("philly", None, None).is_err());
}
