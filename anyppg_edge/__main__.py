from anyppg_edge.cli import main

raise SystemExit(main())
