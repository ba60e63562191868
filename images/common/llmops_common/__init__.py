"""Code shared by the workload programs: model URIs and the result/progress contract."""
