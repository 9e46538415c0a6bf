"""The built-in sandbox: a moto server, SSH hosts standing in for instances, and a market simulator.

What the rest of the console calls (see each module for the details)::

    lifecycle.ensure_up(state_dir) -> SandboxEndpoints   start the daemon if needed (idempotent)
    lifecycle.down(state_dir) -> bool                    stop it (its instances go with it)
    lifecycle.status(state_dir) -> SandboxStatus
    SandboxEndpoints.ssh_endpoint(instance_id) -> SshEndpoint(host, port, host_key, fingerprint, root_dir, ...)
    SandboxEndpoints.ec2_provider(key_dir) -> Ec2SpotProvider on the sandbox, prices labelled "sandbox table"
    SandboxEndpoints.interrupt_spot(instance_id, notice_s=2.0)    fault injection
    SandboxEndpoints.set_capacity(instance_type, zone="*", available=False)

Modules: `daemon` (the process), `front` (what it adds to moto's EC2 API), `fleet` (one
SSH host per live instance; power-off), `hosts` (one SSH server), `prices` (the table),
`endpoints` (the published endpoints), `lifecycle` (up/down/status), `market` (the
market simulator).
"""
