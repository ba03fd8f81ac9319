"""Running eventray on a Ray cluster: ``eventray deploy``, ``eventray status``, cluster configs."""
