"""Cloud farms: start and stop spot/preemptible workers on AWS and GCE.

`base` holds the interfaces (Instance, Provider, Farm), `policy` the pure autoscaling
decision, `reconcile` the glue that runs it, `aws`/`gce` the providers, `userdata` the
template rendering, `setup` and `cli` the `coalition cloud` command. Importing this package
imports no cloud SDK: boto3 and google-cloud-compute are optional extras, loaded on use.
"""
