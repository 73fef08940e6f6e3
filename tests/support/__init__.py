"""What the tests share besides fixtures: test lakes (:mod:`support.lakes`), running the jobs
as users do and comparing stores (:mod:`support.pipeline`), broken image files
(:mod:`support.imagefiles`), and a TCP front that can cut a server off (:mod:`support.tcp_front`)."""
