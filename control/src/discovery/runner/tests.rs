//! The loop with scripted sources: when it fetches, what it bounds, what it reports.

use super::*;
use std::collections::VecDeque;
use std::sync::Mutex;

/// What the source does in one call: answer `Ok(port)` (one backend with that port) or fail,
/// after `delay`.
#[derive(Clone, Copy)]
enum Step {
    Ok(u16, Duration),
    Fail(Duration),
}

/// A source playing `script` (then failing at once); records which method each call was and
/// when it started.
struct Scripted<const WATCHES: bool> {
    script: Mutex<VecDeque<Step>>,
    calls: Mutex<Vec<(&'static str, Instant, Duration)>>,
}

impl<const W: bool> Scripted<W> {
    fn new(script: &[Step]) -> Scripted<W> {
        Scripted { script: Mutex::new(script.iter().copied().collect()), calls: Mutex::default() }
    }

    async fn play(&self, method: &'static str, wait: Duration) -> Result<Found, String> {
        self.calls.lock().unwrap().push((method, Instant::now(), wait));
        let step = self.script.lock().unwrap().pop_front().unwrap_or(Step::Fail(Duration::ZERO));
        match step {
            Step::Ok(port, delay) => {
                tokio::time::sleep(delay).await;
                Ok(Found { backends: vec![BackendSpec::new("h", port)], notes: Vec::new() })
            }
            Step::Fail(delay) => {
                tokio::time::sleep(delay).await;
                Err("scripted failure".into())
            }
        }
    }

    fn methods(&self) -> Vec<&'static str> {
        self.calls.lock().unwrap().iter().map(|c| c.0).collect()
    }

    /// Time from the start of call `i` to the start of call `i + 1`.
    fn gap(&self, i: usize) -> Duration {
        let calls = self.calls.lock().unwrap();
        calls[i + 1].1 - calls[i].1
    }
}

impl<const W: bool> Source for Scripted<W> {
    const DEFAULT_TIMEOUT: Duration = Duration::from_millis(200);
    const RETRY_WAIT: Duration = Duration::from_millis(150);
    const WATCHES: bool = W;

    async fn fetch(&self) -> Result<Found, String> {
        self.play("fetch", Duration::ZERO).await
    }

    async fn fetch_changed(&self, wait: Duration, _timeout: Duration) -> Result<Found, String> {
        self.play("changed", wait).await
    }
}

/// What the loop reported, in order: `Ok(ports)` or `Err(set_empty)`.
#[derive(Default)]
struct Reports(Mutex<Vec<Result<Vec<u16>, bool>>>);

impl Report for Arc<Reports> {
    fn discovered(&self, backends: Vec<BackendSpec>) {
        self.0.lock().unwrap().push(Ok(backends.iter().map(|b| b.port).collect()));
    }

    fn failed(&self, _error: String, set_empty: bool) {
        self.0.lock().unwrap().push(Err(set_empty));
    }
}

fn plan(interval: Option<u64>, set_empty: bool) -> Plan {
    Plan {
        interval: interval.map(Duration::from_millis),
        timeout: Duration::from_millis(200),
        retry: Duration::from_millis(150),
        set_empty,
    }
}

/// Runs the loop for `time`, then stops it.
async fn run_for<const W: bool>(
    time: u64,
    source: &Arc<Scripted<W>>,
    plan: Plan,
) -> Vec<Result<Vec<u16>, bool>> {
    let reports = Arc::new(Reports::default());
    let (s, r) = (source.clone(), reports.clone());
    let task = tokio::spawn(async move { run("test", &r, &*s, &plan).await });
    tokio::time::sleep(Duration::from_millis(time)).await;
    task.abort();
    let _ = task.await;
    let reports = reports.0.lock().unwrap();
    reports.clone()
}

const NOW: Duration = Duration::ZERO;

#[tokio::test]
async fn polling_sources_sleep_the_interval_between_fetches() {
    let source = Arc::new(Scripted::<false>::new(&[Step::Ok(1, NOW), Step::Ok(2, NOW), Step::Ok(3, NOW)]));
    let reports = run_for(750, &source, plan(Some(300), false)).await;
    assert_eq!(reports, [Ok(vec![1]), Ok(vec![2]), Ok(vec![3])]);
    assert_eq!(source.methods(), ["fetch"; 3]);
    assert!(source.gap(0) >= Duration::from_millis(300) && source.gap(1) >= Duration::from_millis(300));
}

#[tokio::test]
async fn watching_sources_are_asked_again_at_once() {
    // Each change comes 50 ms after the question; the interval (a fallback) is 10 s.
    let steps =
        [Step::Ok(1, NOW), Step::Ok(2, Duration::from_millis(50)), Step::Ok(3, Duration::from_millis(50))];
    let source = Arc::new(Scripted::<true>::new(&steps));
    let reports = run_for(400, &source, plan(Some(10_000), false)).await;
    assert_eq!(reports[..3], [Ok(vec![1]), Ok(vec![2]), Ok(vec![3])]);
    assert_eq!(source.methods()[..3], ["fetch", "changed", "changed"]);
    assert!(source.gap(1) < Duration::from_millis(300), "no interval between changes: {:?}", source.gap(1));
    assert_eq!(source.calls.lock().unwrap()[1].2, Duration::from_secs(10), "the interval is the wait");
}

#[tokio::test]
async fn a_watch_may_outlast_the_timeout_but_not_the_interval() {
    // The timeout is 200 ms; a change after 500 ms is within the 1 s wait.
    let steps =
        [Step::Ok(1, NOW), Step::Ok(2, Duration::from_millis(500)), Step::Ok(3, Duration::from_secs(5))];
    let source = Arc::new(Scripted::<true>::new(&steps));
    let reports = run_for(2500, &source, plan(Some(1000), false)).await;
    // The third call is cut at 1 s + 2 × 200 ms, then the retry is a plain fetch (failing).
    assert_eq!(reports[..3], [Ok(vec![1]), Ok(vec![2]), Err(false)]);
    assert_eq!(source.methods()[..4], ["fetch", "changed", "changed", "fetch"]);
    let cut = source.gap(2);
    assert!(cut >= Duration::from_millis(1400) && cut < Duration::from_millis(2000), "{cut:?}");
}

#[tokio::test]
async fn watching_failures_follow_the_failpolicy_and_start_afresh() {
    let steps = [Step::Ok(1, NOW), Step::Fail(NOW), Step::Ok(2, NOW), Step::Ok(3, NOW)];
    let source = Arc::new(Scripted::<true>::new(&steps));
    let reports = run_for(500, &source, plan(Some(10_000), true)).await;
    assert_eq!(reports[..4], [Ok(vec![1]), Err(true), Ok(vec![2]), Ok(vec![3])]);
    assert_eq!(source.methods()[..4], ["fetch", "changed", "fetch", "changed"]);
    assert!(source.gap(1) >= Duration::from_millis(150), "the retry wait after a failure");
}

#[tokio::test]
async fn a_watch_that_always_changes_does_not_spin() {
    let source = Arc::new(Scripted::<true>::new(&[Step::Ok(1, NOW); 100]));
    let reports = run_for(1000, &source, plan(Some(10_000), false)).await;
    // At most one round per 100 ms.
    assert!((5..=11).contains(&reports.len()), "{} rounds", reports.len());
}

#[tokio::test]
async fn without_an_interval_a_watching_source_is_fetched_once() {
    let source = Arc::new(Scripted::<true>::new(&[Step::Fail(NOW), Step::Ok(1, NOW), Step::Ok(2, NOW)]));
    let reports = run_for(500, &source, plan(None, false)).await;
    assert_eq!(reports, [Err(false), Ok(vec![1])]);
    assert_eq!(source.methods(), ["fetch", "fetch"]);
}
