// Port ranges for test servers that never collide between test processes running in parallel.
#pragma once

namespace pgfleet::testing {

// Returns the first port of a free, aligned block of 100 ports on 127.0.0.1 in [low, high) and
// holds an flock on /tmp/pgfleet-test-ports/<first port> until this process exits. Checking that
// ports are free is not enough: two tests started together could both pick a block before either
// binds; the lock makes the choice exclusive among test processes. Throws when none is left.
int reserve_port_block(int low = 20000, int high = 60000);

}  // namespace pgfleet::testing
