from patrol.cli import main

raise SystemExit(main())
