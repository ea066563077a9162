//! `free_port`: a port is given to a process once.

use sparklio_testkit::free_port;
use std::collections::HashSet;

#[test]
fn a_port_is_given_once() {
    // A thousand binds of port 0 bring some port back almost surely (the kernel draws from
    // about 28 k ports); none may be given twice.
    let ports: Vec<u16> = (0..1000).map(|_| free_port()).collect();
    let distinct: HashSet<u16> = ports.iter().copied().collect();
    assert_eq!(distinct.len(), ports.len());
}
