"""The benchmark's parts (clusterop_dev.bench runs them): one job per module.

- `procfs`: figures of a process from /proc, file limits, ports, metrics scrapes;
- `audit`: the apiserver's writes by one user, from the audit log;
- `readywatch`: when each ManagerCluster first became Ready, as a watch sees it;
- `proxy`: an HTTP proxy in front of the managers that counts their requests;
- `report`: the targets, the table and the plot.
"""
