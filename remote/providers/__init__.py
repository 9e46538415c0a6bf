"""Cloud providers behind one small protocol: prices, launch, describe, list_managed, terminate.

`base` holds the protocol and its records, `ec2` the EC2 spot provider (AWS or the
sandbox's moto, through `aws_client`), `static` the operator's own hosts, `keys` the
SSH key pairs launches generate.
"""
