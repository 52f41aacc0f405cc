from s2snets.cli import main

raise SystemExit(main())
