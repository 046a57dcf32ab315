//! Honest readiness: a call waiting for quota holds none of the inner service's readiness.
//! With `tower::limit::ConcurrencyLimit` inside admission (alone, and in the whole stack),
//! calls queued for quota leave its permits free for other callers.

use std::time::Duration;

use tower::Layer;
use tower::limit::ConcurrencyLimit;
use tower::{Service, ServiceExt};
use tower_headroom::admission::{AdmissionLayer, Cost, Fixed, FixedCost, Limit, Quota};
use tower_headroom::deadline::{Deadline, within};
use tower_headroom::fallback::Target;
use tower_headroom::stack::StackBuilder;
use tower_headroom::{BoxError, HttpClassifier};

/// A backend that takes ten seconds per call.
fn slow()
-> impl Service<http::Request<()>, Response = http::Response<()>, Error = BoxError, Future = impl Send>
+ Clone
+ Send {
    tower::service_fn(|_req: http::Request<()>| async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok::<_, BoxError>(http::Response::new(()))
    })
}

/// Whether `svc` gets ready within a millisecond of virtual time.
async fn ready_at_once<S: Service<http::Request<()>>>(svc: &mut S) -> bool {
    tokio::time::timeout(Duration::from_millis(1), svc.ready())
        .await
        .is_ok_and(|r| r.is_ok())
}

#[tokio::test(start_paused = true)]
async fn calls_waiting_for_quota_hold_no_concurrency_permit_in_admission() {
    let limited = ConcurrencyLimit::new(slow(), 2);
    // Two requests a minute: the third and fourth calls wait about a minute for quota.
    let quota: Quota<&'static str> = Quota::new(Limit::per_minute().requests(2).build().unwrap());
    let svc = AdmissionLayer::new(quota, Fixed::new("api", FixedCost(Cost::ONE_REQUEST)))
        .layer(limited.clone());
    // Each call may wait two minutes for quota.
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let deadline = Deadline::after(Duration::from_secs(120));
            tokio::spawn(within(
                deadline,
                svc.clone().oneshot(http::Request::new(())),
            ))
        })
        .collect();
    // The first two are done; the other two wait for the window to slide.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let mut other = limited.clone();
    assert!(
        ready_at_once(&mut other).await,
        "a call waiting for quota holds a concurrency permit"
    );
    drop(other);
    for call in calls {
        call.await.unwrap().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn calls_waiting_for_quota_hold_no_concurrency_permit_in_the_stack() {
    let limited = ConcurrencyLimit::new(slow(), 2);
    let quota: Quota<&'static str> = Quota::new(Limit::per_minute().requests(2).build().unwrap());
    let stack = StackBuilder::new(tower_headroom::Profile::Http, HttpClassifier::new())
        .target(Target::new("api", "api"))
        .admission(quota, FixedCost(Cost::ONE_REQUEST))
        .services(vec![limited.clone()])
        .unwrap();
    let calls: Vec<_> = (0..4)
        .map(|_| tokio::spawn(stack.clone().oneshot(http::Request::new(()))))
        .collect();
    tokio::time::sleep(Duration::from_secs(11)).await;
    let mut other = limited.clone();
    assert!(
        ready_at_once(&mut other).await,
        "a call waiting for quota holds a concurrency permit"
    );
    drop(other);
    for call in calls {
        let response = call.await.unwrap().unwrap();
        assert_eq!(response.status(), 200);
    }
}
