//! A network-namespace lab for tests.
//!
//! A [`Lab`] creates throwaway network namespaces with unique names, veth links between them, addresses
//! (private ranges only: 10.0.0.0/8 and fd00::/8, and only inside its own namespaces), routes (also via a
//! router, and default routes), IP forwarding for a namespace that routes between its links, TCP/UDP echo
//! listeners and connect probes. Everything is removed when the `Lab` is dropped, also when a test panics:
//! helper processes are killed and the namespaces deleted. Every wait is bounded.
//!
//! Listeners and probes run as helper processes inside a namespace (`ip netns exec NS …`). The helper is
//! the test binary itself, re-executed with a filter that selects one ignored test, which the test crate
//! declares with [`lab_helper!`]; so no extra binary, package or Python is needed, and any crate's
//! tests can use the lab:
//!
//! ```ignore
//! // tests/net.rs (run as root)
//! ajar_lab::lab_helper!();
//!
//! #[test]
//! fn port_is_open() {
//!     if !ajar_lab::preflight(&["ip"]) { return; }
//!     let lab = ajar_lab::Lab::new().unwrap();
//!     let (vm, client) = (lab.netns("vm").unwrap(), lab.netns("cl").unwrap());
//!     let (v, c) = lab.veth(&vm, &client).unwrap();
//!     lab.addr(&vm, &v, "10.77.0.1/24").unwrap();
//!     lab.addr(&client, &c, "10.77.0.2/24").unwrap();
//!     lab.listen(&vm, ajar_lab::Proto::Tcp, "10.77.0.1:22".parse().unwrap()).unwrap();
//!     let got = lab.probe(&client, ajar_lab::Proto::Tcp, "10.77.0.2".parse().unwrap(), "10.77.0.1:22".parse().unwrap(),
//!         std::time::Duration::from_secs(2)).unwrap();
//!     assert_eq!(got, ajar_lab::Probe::Open);
//! }
//! ```

mod helper;
mod lab;
mod lines;
mod run;

pub use helper::helper_main;
pub use lab::{Lab, LabError, Netns, Probe, Proto, Session, preflight, run_or_skip};
pub use lines::await_line;
pub use run::{Output, run_bounded};

/// Declares the test that the lab's helper processes run as. Invoke it once at the root of every test
/// crate (each `tests/*.rs` file) that uses the lab.
#[macro_export]
macro_rules! lab_helper {
    () => {
        /// Entry point of the ajar lab's helper processes (listeners, probes); does nothing when run by hand.
        #[test]
        #[ignore = "ajar-lab helper: runs only when the lab spawns this binary"]
        fn ajar_lab_helper() {
            $crate::helper_main();
        }
    };
}
